/**
 * Kubernetes resource quantities (`500m`, `2`, `4Gi`, `1e3`), as the API
 * server's grammar defines them: a signed decimal number and an optional
 * binary-SI, decimal-SI or decimal-exponent suffix.
 */
const QUANTITY = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?\d+)?$/;

const SUFFIX_FACTOR: Record<string, number> = {
  "": 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

export function isQuantity(text: string): boolean {
  return QUANTITY.test(text);
}

/** The quantity's value in base units (cores, bytes), or undefined when it does not parse. */
export function quantityValue(text: string): number | undefined {
  const match = QUANTITY.exec(text);
  if (!match) return undefined;
  const [, number = "0", suffix = ""] = match;
  const factor =
    suffix.startsWith("e") || suffix.startsWith("E")
      ? 10 ** Number(suffix.slice(1))
      : SUFFIX_FACTOR[suffix];
  return Number(number) * (factor ?? Number.NaN);
}

export function cpuMillicores(text: string): number | undefined {
  const value = quantityValue(text);
  return value === undefined ? undefined : Math.ceil(value * 1000);
}

export function memoryBytes(text: string): number | undefined {
  const value = quantityValue(text);
  return value === undefined ? undefined : Math.ceil(value);
}
