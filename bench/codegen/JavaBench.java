// Times a generated model class (warm JIT) on float32 rows read from a file, for
// bench_codegen.py. Arguments: class name, rows file (int32 n, int32 n_features, float32 data),
// seconds of warm-up, repeats. Prints one line per timed repeat: "batch <wall s> <cpu s>", then
// "single <wall s> <cpu s> <calls>" for single-row calls.
import java.lang.reflect.Method;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Paths;

public final class JavaBench {
    private JavaBench() {
    }

    public static void main(String[] args) throws Exception {
        final Class<?> c = Class.forName(args[0]);
        final ByteBuffer in = ByteBuffer.wrap(Files.readAllBytes(Paths.get(args[1]))).order(ByteOrder.LITTLE_ENDIAN);
        final int n = in.getInt();
        final int nf = in.getInt();
        final float[] x = new float[n * nf];
        in.asFloatBuffer().get(x);
        // warm-up: seconds, or a number of batch calls when the argument ends in "x"
        final boolean byCalls = args[2].endsWith("x");
        final double warm = Double.parseDouble(byCalls ? args[2].substring(0, args[2].length() - 1) : args[2]);
        final int repeats = Integer.parseInt(args[3]);
        final int no = c.getField("N_OUTPUTS").getInt(null);
        final float[] out = new float[n * no];
        final Method batch = c.getMethod("predict", float[].class, int.class, float[].class);
        final Method one = c.getMethod("predict", float[].class);
        long t0 = System.nanoTime();
        for (int calls = 0; byCalls ? calls < warm : (System.nanoTime() - t0) / 1e9 < warm; calls++) {
            batch.invoke(null, x, n, out);
        }
        final java.lang.management.ThreadMXBean cpu = java.lang.management.ManagementFactory.getThreadMXBean();
        for (int k = 0; k < repeats; k++) {
            final long s = System.nanoTime();
            final long c0 = cpu.getCurrentThreadCpuTime();
            batch.invoke(null, x, n, out);
            System.out.println("batch " + (System.nanoTime() - s) / 1e9 + " " + (cpu.getCurrentThreadCpuTime() - c0) / 1e9);
        }
        final int calls = Math.min(n, 20000);
        final float[][] rows = new float[calls][];
        for (int i = 0; i < calls; i++) {
            rows[i] = java.util.Arrays.copyOfRange(x, i * nf, (i + 1) * nf);
        }
        t0 = System.nanoTime();
        while (!byCalls && (System.nanoTime() - t0) / 1e9 < warm / 2) {
            for (int i = 0; i < calls; i++) {
                one.invoke(null, (Object) rows[i]);
            }
        }
        for (int k = 0; k < repeats; k++) {
            final long s = System.nanoTime();
            final long c0 = cpu.getCurrentThreadCpuTime();
            for (int i = 0; i < calls; i++) {
                one.invoke(null, (Object) rows[i]);
            }
            System.out.println("single " + (System.nanoTime() - s) / 1e9 + " " + (cpu.getCurrentThreadCpuTime() - c0) / 1e9 + " " + calls);
        }
        float sum = 0;
        for (float v : out) {
            sum += v;
        }
        System.err.println("checksum " + sum);
    }
}
