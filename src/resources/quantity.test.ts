import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  compareQuantities,
  cpuMillicores,
  isQuantity,
  memoryBytes,
  quantityMillis,
  quantityValue,
} from "./quantity.js";

const MAX_MILLIS = (2n ** 63n - 1n) * 1000n;

describe("Kubernetes quantity grammar", () => {
  it.each([
    ["500m", 500n],
    ["2", 2000n],
    ["0", 0n],
    ["4Gi", 4n * 2n ** 30n * 1000n],
    ["1Ki", 1024_000n],
    ["1Mi", 2n ** 20n * 1000n],
    ["1Ti", 2n ** 40n * 1000n],
    ["1Pi", 2n ** 50n * 1000n],
    ["1Ei", 2n ** 60n * 1000n],
    ["1.5Gi", 3n * 2n ** 29n * 1000n],
    ["1k", 1_000_000n],
    ["1M", 10n ** 9n],
    ["1G", 10n ** 12n],
    ["1T", 10n ** 15n],
    ["1P", 10n ** 18n],
    ["1E", 10n ** 21n],
    ["1e3", 1_000_000n],
    ["1E3", 1_000_000n],
    ["1e+3", 1_000_000n],
    ["15e-1", 1500n],
    [".5", 500n],
    ["5.", 5000n],
    ["0.25", 250n],
    ["+1", 1000n],
    ["-1", -1000n],
    ["007", 7000n],
    ["1.m", 1n],
  ])("reads %s", (text, millis) => {
    expect(isQuantity(text)).toBe(true);
    expect(quantityMillis(text)).toBe(millis);
  });

  it.each([
    "",
    " ",
    "abc",
    "1.2.3",
    "1 Gi",
    " 1",
    "1 ",
    "1gi",
    "1GB",
    "1K",
    "1KiB",
    "1mi",
    "1e",
    "1e1.5",
    "1e3m",
    ".",
    "+",
    "-",
    "m",
    "Gi",
    "0x10",
    "1,5",
    "١",
  ])("refuses %j", (text) => {
    expect(isQuantity(text)).toBe(false);
    expect(quantityMillis(text)).toBeUndefined();
    expect(quantityValue(text)).toBeUndefined();
    expect(cpuMillicores(text)).toBeUndefined();
    expect(memoryBytes(text)).toBeUndefined();
    expect(compareQuantities(text, "1")).toBeUndefined();
    expect(compareQuantities("1", text)).toBeUndefined();
  });
});

describe("exact values (no floating point drift)", () => {
  it("counts decimal CPU values exactly", () => {
    expect(cpuMillicores("16.1")).toBe(16100);
    expect(cpuMillicores("1.1")).toBe(1100);
    expect(cpuMillicores("9m")).toBe(9);
    expect(memoryBytes("4.1M")).toBe(4_100_000);
    expect(memoryBytes("0.3M")).toBe(300_000);
  });

  it("sees the same quantity in different spellings as equal", () => {
    expect(compareQuantities("9m", "0.009")).toBe(0);
    expect(compareQuantities("1100m", "1.1")).toBe(0);
    expect(compareQuantities("1Gi", "1073741824")).toBe(0);
    expect(compareQuantities("1Ki", "1.024k")).toBe(0);
    expect(compareQuantities("1e3", "1k")).toBe(0);
    expect(compareQuantities("2", "1")).toBe(1);
    expect(compareQuantities("999m", "1")).toBe(-1);
    expect(compareQuantities("1Gi", "1G")).toBe(1);
  });

  it("agrees that n millis, n/1000 as a decimal and n×10^-3 in exponent form are one value", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 10n ** 15n }), (n) => {
        const whole = n / 1000n;
        const frac = (n % 1000n).toString().padStart(3, "0");
        const decimal = `${whole}.${frac}`;
        expect(quantityMillis(`${n}m`)).toBe(n);
        expect(quantityMillis(decimal)).toBe(n);
        expect(quantityMillis(`${n}e-3`)).toBe(n);
        expect(compareQuantities(`${n}m`, decimal)).toBe(0);
      }),
    );
  });

  it("multiplies binary suffixes exactly", () => {
    const suffixes = [
      ["Ki", 10n],
      ["Mi", 20n],
      ["Gi", 30n],
      ["Ti", 40n],
    ] as const;
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: 10n ** 6n }),
        fc.constantFrom(...suffixes),
        (n, [suffix, bits]) => {
          expect(quantityMillis(`${n}${suffix}`)).toBe(n * 2n ** bits * 1000n);
        },
      ),
    );
  });

  it("orders quantities as their integer millis order", () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: 10n ** 12n }),
        fc.bigInt({ min: 0n, max: 10n ** 12n }),
        (a, b) => {
          const expected = a < b ? -1 : a > b ? 1 : 0;
          expect(compareQuantities(`${a}m`, `${b}m`)).toBe(expected);
          expect(compareQuantities(`${a}e-3`, `${b}m`)).toBe(expected);
        },
      ),
    );
  });
});

describe("rounding and limits", () => {
  it("rounds away from zero to a whole thousandth, as Kubernetes does", () => {
    expect(quantityMillis("0.1m")).toBe(1n);
    expect(quantityMillis("1.0001")).toBe(1001n);
    expect(quantityMillis("-0.1m")).toBe(-1n);
    expect(quantityMillis("1e-999999999")).toBe(1n);
    expect(memoryBytes("1.5")).toBe(2);
    expect(memoryBytes("0.5Ki")).toBe(512);
    expect(memoryBytes("1.1Gi")).toBe(1181116007);
  });

  it("caps the magnitude at 2^63-1 without building huge numbers", () => {
    expect(quantityMillis("1e100")).toBe(MAX_MILLIS);
    expect(quantityMillis("1e999999999")).toBe(MAX_MILLIS);
    expect(quantityMillis("-1e100")).toBe(-MAX_MILLIS);
    expect(quantityMillis("99999999999Ei")).toBe(MAX_MILLIS);
  });

  it("keeps zero as zero in every spelling", () => {
    for (const text of ["0", "0m", "0Gi", "-0", "0.000", "0e9", ".0"]) {
      expect(quantityMillis(text)).toBe(0n);
    }
  });

  it("quantityValue is the value in base units", () => {
    expect(quantityValue("500m")).toBe(0.5);
    expect(quantityValue("4Gi")).toBe(4 * 2 ** 30);
    expect(quantityValue("-2")).toBe(-2);
  });
});
