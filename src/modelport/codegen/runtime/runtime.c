/* @common: helpers every generated C file gets (PREFIX_ is replaced by the symbol prefix) */
static float PREFIX_sigmoid(float x) {
    const float v = 1.0f / (1.0f + expf(-fabsf(x)));
    return x < 0 ? 1.0f - v : v;
}
static double PREFIX_sigmoidd(double x) {
    const double v = 1.0 / (1.0 + exp(-fabs(x)));
    return x < 0 ? 1.0 - v : v;
}
static long long PREFIX_toint(float x) {
    if (isnan(x) || x >= 9.2233720368547758e18f || x < -9.2233720368547758e18f) return INT64_MIN;
    return (long long)x;
}
/* @coupling: ONNX Runtime's multiclass_probability (pairwise coupling), in float; KMAX is the
   largest number of classes the program couples */
static void PREFIX_coupling(int k, const float *r, float *p) {
    float Q[KMAX * KMAX] = {0}, Qp[KMAX] = {0};
    const float eps = 0.005f / (float)k;
    for (int i = 0; i < k; i++) {
        p[i] = 1.0f / (float)k;
        for (int j = 0; j < i; j++) { Q[i * k + i] += r[j * k + i] * r[j * k + i]; Q[i * k + j] = Q[j * k + i]; }
        for (int j = i + 1; j < k; j++) { Q[i * k + i] += r[j * k + i] * r[j * k + i]; Q[i * k + j] = -r[j * k + i] * r[i * k + j]; }
    }
    for (int loop = 0; loop < 100; loop++) {
        float pQp = 0;
        for (int i = 0; i < k; i++) { Qp[i] = 0; for (int j = 0; j < k; j++) Qp[i] += Q[i * k + j] * p[j]; pQp += p[i] * Qp[i]; }
        float max_error = 0;
        for (int i = 0; i < k; i++) { const float err = fabsf(Qp[i] - pQp); if (err > max_error) max_error = err; }
        if (max_error < eps) break;
        for (int i = 0; i < k; i++) {
            const float diff = (-Qp[i] + pQp) / Q[i * k + i];
            p[i] += diff;
            pQp = (pQp + diff * (diff * Q[i * k + i] + 2 * Qp[i])) / (1 + diff) / (1 + diff);
            for (int j = 0; j < k; j++) { Qp[j] = (Qp[j] + diff * Q[i * k + j]) / (1 + diff); p[j] /= (1 + diff); }
        }
    }
}
