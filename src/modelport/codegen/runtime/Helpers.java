    // ---------------------------------------------------------------- runtime (modelport)

    private static float sigmoid(float x) {
        final float v = 1.0f / (1.0f + (float) Math.exp(-Math.abs(x)));
        return x < 0 ? 1.0f - v : v;
    }

    private static double sigmoid(double x) {
        final double v = 1.0 / (1.0 + Math.exp(-Math.abs(x)));
        return x < 0 ? 1.0 - v : v;
    }

    private static long toInt(double x) {
        if (x != x || x >= 9.2233720368547758e18 || x < -9.2233720368547758e18) {
            return Long.MIN_VALUE;
        }
        return (long) x;
    }

    private static float maxOf(float[] a) {
        float m = -Float.MAX_VALUE;
        for (float v : a) {
            if (v > m) {
                m = v;
            }
        }
        return m;
    }

    private static double maxOf(double[] a) {
        double m = -Float.MAX_VALUE;
        for (double v : a) {
            if (v > m) {
                m = v;
            }
        }
        return m;
    }

    /** Index of the first largest value (NaN never wins). */
    private static int argMax(double[] a) {
        int best = 0;
        double bv = a[0];
        for (int i = 1; i < a.length; i++) {
            if (a[i] > bv) {
                best = i;
                bv = a[i];
            }
        }
        return best;
    }

    /** sum(w[off + j] * value(idx[off + j])) + bias: idx >= 0 reads v, idx < 0 reads column -1 - idx of x. */
    private static double dot(double[] v, float[] x, int xo, int[] idx, double[] w, int off, int n, double bias) {
        double s = bias;
        for (int j = off; j < off + n; j++) {
            final int i = idx[j];
            s += w[j] * (i >= 0 ? v[i] : (double) x[xo - 1 - i]);
        }
        return s;
    }

    /** ONNX Runtime's multiclass_probability (pairwise coupling), in float. */
    private static float[] coupling(int k, float[] r) {
        final float[] p = new float[k];
        final float[] q = new float[k * k];
        final float[] qp = new float[k];
        final float eps = 0.005f / (float) k;
        for (int i = 0; i < k; i++) {
            p[i] = 1.0f / (float) k;
            for (int j = 0; j < i; j++) {
                q[i * k + i] += r[j * k + i] * r[j * k + i];
                q[i * k + j] = q[j * k + i];
            }
            for (int j = i + 1; j < k; j++) {
                q[i * k + i] += r[j * k + i] * r[j * k + i];
                q[i * k + j] = -r[j * k + i] * r[i * k + j];
            }
        }
        for (int loop = 0; loop < 100; loop++) {
            float pqp = 0;
            for (int i = 0; i < k; i++) {
                qp[i] = 0;
                for (int j = 0; j < k; j++) {
                    qp[i] += q[i * k + j] * p[j];
                }
                pqp += p[i] * qp[i];
            }
            float maxError = 0;
            for (int i = 0; i < k; i++) {
                final float err = Math.abs(qp[i] - pqp);
                if (err > maxError) {
                    maxError = err;
                }
            }
            if (maxError < eps) {
                break;
            }
            for (int i = 0; i < k; i++) {
                final float diff = (-qp[i] + pqp) / q[i * k + i];
                p[i] += diff;
                pqp = (pqp + diff * (diff * q[i * k + i] + 2 * qp[i])) / (1 + diff) / (1 + diff);
                for (int j = 0; j < k; j++) {
                    qp[j] = (qp[j] + diff * q[i * k + j]) / (1 + diff);
                    p[j] /= (1 + diff);
                }
            }
        }
        return p;
    }

    /** Walks every tree of a general node table (any split mode) for nb rows. */
    private static void walkGeneral(int[] nd, float[] thr, float[] mem, int[] roots, float[] leaves, int k, int agg,
                                    float[] feat, int fo, int stride, int nb, float[] acc) {
        final float init = agg == 2 ? Float.POSITIVE_INFINITY : (agg == 3 ? Float.NEGATIVE_INFINITY : 0.0f);
        java.util.Arrays.fill(acc, 0, nb * k, init);
        for (int t = 0; t < roots.length; t++) {
            for (int r = 0; r < nb; r++) {
                final int base = fo + r * stride;
                int i = roots[t];
                while ((nd[6 * i] & 7) != 7) {
                    final int m = nd[6 * i];
                    final float v = feat[base + nd[6 * i + 1]];
                    final float th = thr[i];
                    boolean go;
                    switch (m & 7) {
                        case 0: go = v <= th; break;
                        case 1: go = v < th; break;
                        case 2: go = v >= th; break;
                        case 3: go = v > th; break;
                        case 4: go = v == th; break;
                        case 5: go = v != th; break;
                        default:
                            go = false;
                            for (int q = nd[6 * i + 4]; q < nd[6 * i + 4] + nd[6 * i + 5]; q++) {
                                if (v == mem[q]) {
                                    go = true;
                                    break;
                                }
                            }
                    }
                    if ((m & 8) != 0 && v != v) {
                        go = true;
                    }
                    i = go ? nd[6 * i + 2] : nd[6 * i + 3];
                }
                final int leaf = nd[6 * i + 4] * k;
                for (int j = 0; j < k; j++) {
                    final float w = leaves[leaf + j];
                    final int a = r * k + j;
                    if (agg == 2) {
                        if (w < acc[a]) {
                            acc[a] = w;
                        }
                    } else if (agg == 3) {
                        if (w > acc[a]) {
                            acc[a] = w;
                        }
                    } else {
                        acc[a] += w;
                    }
                }
            }
        }
        if (agg >= 2) {
            for (int q = 0; q < nb * k; q++) {
                if (Float.isInfinite(acc[q])) {
                    acc[q] = 0;
                }
            }
        }
    }

    /** Like walkGeneral, for ensembles with double thresholds and accumulation. */
    private static void walkGeneral(int[] nd, double[] thr, double[] mem, int[] roots, double[] leaves, int k, int agg,
                                    float[] feat, int fo, int stride, int nb, double[] acc) {
        final double init = agg == 2 ? Double.POSITIVE_INFINITY : (agg == 3 ? Double.NEGATIVE_INFINITY : 0.0);
        java.util.Arrays.fill(acc, 0, nb * k, init);
        for (int t = 0; t < roots.length; t++) {
            for (int r = 0; r < nb; r++) {
                final int base = fo + r * stride;
                int i = roots[t];
                while ((nd[6 * i] & 7) != 7) {
                    final int m = nd[6 * i];
                    final float x = feat[base + nd[6 * i + 1]];
                    final double v = x;
                    final double th = thr[i];
                    boolean go;
                    switch (m & 7) {
                        case 0: go = v <= th; break;
                        case 1: go = v < th; break;
                        case 2: go = v >= th; break;
                        case 3: go = v > th; break;
                        case 4: go = v == th; break;
                        case 5: go = v != th; break;
                        default:
                            go = false;
                            for (int q = nd[6 * i + 4]; q < nd[6 * i + 4] + nd[6 * i + 5]; q++) {
                                if (v == mem[q]) {
                                    go = true;
                                    break;
                                }
                            }
                    }
                    if ((m & 8) != 0 && x != x) {
                        go = true;
                    }
                    i = go ? nd[6 * i + 2] : nd[6 * i + 3];
                }
                final int leaf = nd[6 * i + 4] * k;
                for (int j = 0; j < k; j++) {
                    final double w = leaves[leaf + j];
                    final int a = r * k + j;
                    if (agg == 2) {
                        if (w < acc[a]) {
                            acc[a] = w;
                        }
                    } else if (agg == 3) {
                        if (w > acc[a]) {
                            acc[a] = w;
                        }
                    } else {
                        acc[a] += w;
                    }
                }
            }
        }
        if (agg >= 2) {
            for (int q = 0; q < nb * k; q++) {
                if (Double.isInfinite(acc[q])) {
                    acc[q] = 0;
                }
            }
        }
    }

    private static java.nio.ByteBuffer data(String[] parts) {
        final StringBuilder text = new StringBuilder();
        for (String p : parts) {
            text.append(p);
        }
        final byte[] raw = java.util.Base64.getDecoder().decode(text.toString());
        return java.nio.ByteBuffer.wrap(raw).order(java.nio.ByteOrder.LITTLE_ENDIAN);
    }

    private static int[] ints(java.nio.ByteBuffer b, int offset, int n) {
        final int[] out = new int[n];
        b.asIntBuffer().position(offset).get(out);
        return out;
    }

    private static long[] longs(java.nio.ByteBuffer b, int offset, int n) {
        final long[] out = new long[n];
        b.asLongBuffer().position(offset).get(out);
        return out;
    }

    private static float[] floats(java.nio.ByteBuffer b, int offset, int n) {
        final float[] out = new float[n];
        b.asFloatBuffer().position(offset).get(out);
        return out;
    }

    private static double[] doubles(java.nio.ByteBuffer b, int offset, int n) {
        final double[] out = new double[n];
        b.asDoubleBuffer().position(offset).get(out);
        return out;
    }
