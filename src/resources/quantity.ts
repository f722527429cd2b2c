/**
 * Kubernetes resource quantities (`500m`, `2`, `4Gi`, `1e3`), as the API
 * server's grammar defines them: a signed decimal number and an optional
 * binary-SI, decimal-SI or decimal-exponent suffix.
 *
 * Values are computed exactly (BigInt), never as floating point: `9m` and
 * `0.009` are the same quantity, and `16.1` is 16100 millicores, not 16101.
 * As in Kubernetes, a value is rounded away from zero to a whole thousandth
 * and capped at 2^63-1 in magnitude.
 */
const QUANTITY = /^([+-]?)(\d*)(?:\.(\d*))?(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?\d+)?$/;

/** Suffix → [power of ten, power of two]. */
const SUFFIX_SCALE: Record<string, readonly [number, number]> = {
  "": [0, 0],
  m: [-3, 0],
  k: [3, 0],
  M: [6, 0],
  G: [9, 0],
  T: [12, 0],
  P: [15, 0],
  E: [18, 0],
  Ki: [0, 10],
  Mi: [0, 20],
  Gi: [0, 30],
  Ti: [0, 40],
  Pi: [0, 50],
  Ei: [0, 60],
};

/** Largest magnitude, in thousandths: Kubernetes caps quantities at 2^63-1. */
const MAX_MILLIS = (2n ** 63n - 1n) * 1000n;

export function isQuantity(text: string): boolean {
  return quantityMillis(text) !== undefined;
}

/**
 * The quantity in thousandths of its base unit (millicores, millibytes),
 * rounded away from zero, or undefined when `text` is not a quantity.
 */
export function quantityMillis(text: string): bigint | undefined {
  const match = QUANTITY.exec(text);
  if (!match) return undefined;
  const [, sign = "", whole = "", fraction, suffix = ""] = match;
  if (whole === "" && (fraction ?? "") === "") return undefined;
  let exp10: number;
  let exp2: number;
  const scale = SUFFIX_SCALE[suffix];
  if (scale) [exp10, exp2] = scale;
  else {
    const exponent = suffix.slice(1);
    // Beyond any cap either way; keeps BigInt powers small.
    exp10 =
      exponent.replace(/^[+-]?0*/, "").length > 4
        ? Math.sign(Number(exponent)) * 1e4
        : Number(exponent);
    exp2 = 0;
  }
  const digits = `${whole}${fraction ?? ""}`.replace(/^0+/, "");
  if (digits === "") return 0n;
  const mantissa = BigInt(digits) * 2n ** BigInt(exp2);
  // |value| × 1000 = mantissa × 10^power, rounded away from zero as Kubernetes does.
  const power = exp10 - (fraction ?? "").length + 3;
  let millis: bigint;
  if (power > 40) millis = MAX_MILLIS;
  else if (power >= 0) millis = mantissa * 10n ** BigInt(power);
  else if (-power > mantissa.toString().length) millis = 1n;
  else {
    const divisor = 10n ** BigInt(-power);
    millis = (mantissa + divisor - 1n) / divisor;
  }
  if (millis > MAX_MILLIS) millis = MAX_MILLIS;
  return sign === "-" ? -millis : millis;
}

/** The quantity's value in base units (cores, bytes), or undefined when it does not parse. */
export function quantityValue(text: string): number | undefined {
  const millis = quantityMillis(text);
  return millis === undefined ? undefined : Number(millis) / 1000;
}

/** -1, 0 or 1 as `a` is below, equal to or above `b`; undefined when either does not parse. */
export function compareQuantities(a: string, b: string): -1 | 0 | 1 | undefined {
  const x = quantityMillis(a);
  const y = quantityMillis(b);
  if (x === undefined || y === undefined) return undefined;
  return x < y ? -1 : x > y ? 1 : 0;
}

export function cpuMillicores(text: string): number | undefined {
  const millis = quantityMillis(text);
  return millis === undefined ? undefined : Number(millis);
}

/** Whole bytes, rounded away from zero. */
export function memoryBytes(text: string): number | undefined {
  const millis = quantityMillis(text);
  if (millis === undefined) return undefined;
  const magnitude = ((millis < 0n ? -millis : millis) + 999n) / 1000n;
  return Number(millis < 0n ? -magnitude : magnitude);
}
