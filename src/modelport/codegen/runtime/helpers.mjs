// ---------------------------------------------------------------- runtime (modelport)

const fround = Math.fround;

function sigmoidf(x) {
  const v = fround(1 / fround(1 + fround(Math.exp(-Math.abs(x)))));
  return x < 0 ? fround(1 - v) : v;
}

function sigmoid(x) {
  const v = 1 / (1 + Math.exp(-Math.abs(x)));
  return x < 0 ? 1 - v : v;
}

function toInt(x) {
  if (x !== x || x >= 9223372036854775807 || x < -9223372036854775808) return -9223372036854775808;
  return Math.trunc(x);
}

function maxOf(a) {
  let m = -3.4028234663852886e38;
  for (const v of a) if (v > m) m = v;
  return m;
}

// index of the first largest value (NaN never wins)
function argMax(a) {
  let best = 0;
  let bv = a[0];
  for (let i = 1; i < a.length; i++) {
    if (a[i] > bv) {
      best = i;
      bv = a[i];
    }
  }
  return best;
}

function idiv(a, b) {
  return b === 0 ? 0 : Math.trunc(a / b);
}

// ONNX Runtime's multiclass_probability (pairwise coupling), in float32
function coupling(k, r) {
  const p = new Float32Array(k);
  const q = new Float32Array(k * k);
  const qp = new Float32Array(k);
  const eps = fround(fround(0.005) / k);
  for (let i = 0; i < k; i++) {
    p[i] = fround(1 / k);
    for (let j = 0; j < i; j++) {
      q[i * k + i] += fround(r[j * k + i] * r[j * k + i]);
      q[i * k + j] = q[j * k + i];
    }
    for (let j = i + 1; j < k; j++) {
      q[i * k + i] += fround(r[j * k + i] * r[j * k + i]);
      q[i * k + j] = fround(-r[j * k + i] * r[i * k + j]);
    }
  }
  for (let loop = 0; loop < 100; loop++) {
    let pqp = 0;
    for (let i = 0; i < k; i++) {
      qp[i] = 0;
      for (let j = 0; j < k; j++) qp[i] += fround(q[i * k + j] * p[j]);
      pqp = fround(pqp + fround(p[i] * qp[i]));
    }
    let maxError = 0;
    for (let i = 0; i < k; i++) {
      const err = Math.abs(fround(qp[i] - pqp));
      if (err > maxError) maxError = err;
    }
    if (maxError < eps) break;
    for (let i = 0; i < k; i++) {
      const diff = fround(fround(-qp[i] + pqp) / q[i * k + i]);
      p[i] += diff;
      const one = fround(1 + diff);
      pqp = fround(fround(fround(pqp + fround(diff * fround(fround(diff * q[i * k + i]) + fround(2 * qp[i])))) / one) / one);
      for (let j = 0; j < k; j++) {
        qp[j] = fround(fround(qp[j] + fround(diff * q[i * k + j])) / one);
        p[j] = fround(p[j] / one);
      }
    }
  }
  return p;
}

// walks every tree of a general node table (any split mode) for nb rows
function walkGeneral(nd, thr, mem, roots, leaves, k, agg, feat, fo, stride, nb, acc) {
  const init = agg === 2 ? Infinity : agg === 3 ? -Infinity : 0;
  acc.fill(init, 0, nb * k);
  for (let t = 0; t < roots.length; t++) {
    for (let r = 0; r < nb; r++) {
      const base = fo + r * stride;
      let i = roots[t];
      while ((nd[6 * i] & 7) !== 7) {
        const m = nd[6 * i];
        const v = feat[base + nd[6 * i + 1]];
        const th = thr[i];
        let go;
        switch (m & 7) {
          case 0: go = v <= th; break;
          case 1: go = v < th; break;
          case 2: go = v >= th; break;
          case 3: go = v > th; break;
          case 4: go = v === th; break;
          case 5: go = v !== th; break;
          default:
            go = false;
            for (let q = nd[6 * i + 4]; q < nd[6 * i + 4] + nd[6 * i + 5]; q++) {
              if (v === mem[q]) {
                go = true;
                break;
              }
            }
        }
        if ((m & 8) !== 0 && v !== v) go = true;
        i = go ? nd[6 * i + 2] : nd[6 * i + 3];
      }
      const leaf = nd[6 * i + 4] * k;
      for (let j = 0; j < k; j++) {
        const w = leaves[leaf + j];
        const a = r * k + j;
        if (agg === 2) {
          if (w < acc[a]) acc[a] = w;
        } else if (agg === 3) {
          if (w > acc[a]) acc[a] = w;
        } else {
          acc[a] += w;
        }
      }
    }
  }
  if (agg >= 2) {
    for (let q = 0; q < nb * k; q++) if (acc[q] === Infinity || acc[q] === -Infinity) acc[q] = 0;
  }
}

function decode(parts) {
  const text = atob(parts.join(""));
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes.buffer;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

// a typed-array copy of `n` elements at element offset `offset` of the little-endian data
function view(Type, buffer, offset, n) {
  const width = Type.BYTES_PER_ELEMENT;
  if (LITTLE_ENDIAN) return new Type(buffer.slice(offset * width, (offset + n) * width));
  const dv = new DataView(buffer, offset * width, n * width);
  const out = new Type(n);
  for (let i = 0; i < n; i++) {
    out[i] = width === 8 ? dv.getFloat64(8 * i, true) : Type === Float32Array ? dv.getFloat32(4 * i, true) : dv.getInt32(4 * i, true);
  }
  return out;
}
