// The browser's copy of aqpl/noise_field.render_at_sigma: uint8 of clip(x + σ·ε, 0, 1).
//
// NumPy computes in float32; every step here is rounded to float32 with Math.fround, so the
// two agree bit for bit (an operation on float32 inputs done in float64 and rounded once to
// float32 equals the float32 operation: 53 ≥ 2·24 + 2). np.rint rounds half to even, so
// roundHalfEven does too (Math.round would round 2.5 up to 3).

const f32 = Math.fround;
export const LADDER_MIN_INDEX = 0;
export const LADDER_MAX_INDEX = 90;

/** σ of a ladder index, as the float32 NumPy multiplies with (σ = index / 100). */
export function sigmaOf(index) {
  if (!Number.isInteger(index) || index < LADDER_MIN_INDEX || index > LADDER_MAX_INDEX) {
    throw new RangeError(`σ index ${index} is outside the ladder ${LADDER_MIN_INDEX}..${LADDER_MAX_INDEX}`);
  }
  return f32(index / 100);
}

/** "0.37": the label of a ladder index. */
export function sigmaLabel(index) {
  return (index / 100).toFixed(2);
}

/** Round to the nearest integer, ties to even (np.rint), for values ≥ 0. */
export function roundHalfEven(value) {
  const floor = Math.floor(value);
  const fraction = value - floor;
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** x = pixels / 255 in float32 (channel-interleaved, like the server's H×W×C array). */
export function toUnitFloat(pixels) {
  const out = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) out[i] = pixels[i] / 255;
  return out;
}

/** Grey levels of clip(x + σ·ε, 0, 1) for every value (H×W×C interleaved), into `out` (Uint8 array). */
export function renderValues(unitPixels, epsilon, sigmaIndex, out) {
  const sigma = sigmaOf(sigmaIndex);
  const n = unitPixels.length;
  for (let i = 0; i < n; i++) {
    let value = f32(unitPixels[i] + f32(sigma * epsilon[i]));
    if (value < 0) value = 0;
    else if (value > 1) value = 1;
    out[i] = roundHalfEven(f32(value * 255));
  }
  return out;
}

/**
 * Render into RGBA image data (width×height×4) from C = 1 (grey) or 3 (RGB) channels.
 * The hot loop of a slider step: one pass, no allocation.
 */
export function renderRGBA(unitPixels, epsilon, channels, sigmaIndex, rgba) {
  const sigma = sigmaOf(sigmaIndex);
  const pixelCount = unitPixels.length / channels;
  for (let p = 0, o = 0; p < pixelCount; p++, o += 4) {
    for (let c = 0; c < 3; c++) {
      const i = channels === 1 ? p : p * 3 + c;
      let value = f32(unitPixels[i] + f32(sigma * epsilon[i]));
      if (value < 0) value = 0;
      else if (value > 1) value = 1;
      const scaled = f32(value * 255);
      const floor = Math.floor(scaled);
      const fraction = scaled - floor;
      rgba[o + c] = fraction > 0.5 || (fraction === 0.5 && floor % 2 === 1) ? floor + 1 : floor;
      if (channels === 1) {
        rgba[o + 1] = rgba[o];
        rgba[o + 2] = rgba[o];
        break;
      }
    }
    rgba[o + 3] = 255;
  }
  return rgba;
}
