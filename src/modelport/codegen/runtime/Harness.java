// Runs generated model classes on rows from files and writes their scores, for modelport's
// --check and conformance suite. Arguments: triples of (class name, input file, output file).
// Input: int32 n, int32 n_features, n * n_features float32 (little-endian). Output: int32 n,
// int32 n_outputs, n * n_outputs float32 scores, n int32 labels. Every row is also scored
// through predict(float[]), predict(float[][]) and predictLabel(float[]); a difference from the
// batch call is an error (exit code 3).
import java.lang.reflect.Method;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Paths;

public final class Harness {
    private Harness() {
    }

    public static void main(String[] args) throws Exception {
        for (int a = 0; a + 3 <= args.length; a += 3) {
            final Class<?> c = Class.forName(args[a]);
            final ByteBuffer in = ByteBuffer.wrap(Files.readAllBytes(Paths.get(args[a + 1]))).order(ByteOrder.LITTLE_ENDIAN);
            final int n = in.getInt();
            final int nf = in.getInt();
            final float[] x = new float[n * nf];
            in.asFloatBuffer().get(x);
            final int no = c.getField("N_OUTPUTS").getInt(null);
            final float[] out = new float[n * no];
            final int[] labels = new int[n];
            final Method batch = c.getMethod("predictLabels", float[].class, int.class, float[].class, int[].class);
            batch.invoke(null, x, n, out, labels);
            final Method one = c.getMethod("predict", float[].class);
            final Method many = c.getMethod("predict", float[][].class);
            final Method label = c.getMethod("predictLabel", float[].class);
            final float[][] rows = new float[n][];
            for (int i = 0; i < n; i++) {
                rows[i] = java.util.Arrays.copyOfRange(x, i * nf, (i + 1) * nf);
            }
            final float[][] all = (float[][]) many.invoke(null, (Object) rows);
            for (int i = 0; i < n; i++) {
                final float[] s = (float[]) one.invoke(null, (Object) rows[i]);
                final int l = (Integer) label.invoke(null, (Object) rows[i]);
                for (int j = 0; j < no; j++) {
                    final int want = Float.floatToIntBits(out[i * no + j]);
                    if (Float.floatToIntBits(s[j]) != want || Float.floatToIntBits(all[i][j]) != want || l != labels[i]) {
                        System.err.println(args[a] + ": row " + i + " scores differently through predict(float[]),"
                            + " predict(float[][]) or predictLabel than through predictLabels");
                        System.exit(3);
                    }
                }
            }
            final ByteBuffer o = ByteBuffer.allocate(8 + 4 * n * no + 4 * n).order(ByteOrder.LITTLE_ENDIAN);
            o.putInt(n).putInt(no);
            for (float v : out) {
                o.putFloat(v);
            }
            for (int v : labels) {
                o.putInt(v);
            }
            Files.write(Paths.get(args[a + 2]), o.array());
        }
    }
}
