import { yaml } from "../lazy-yaml.js";
import type { OutputFormat } from "./context.js";

export function printData(data: unknown, format: "json" | "yaml"): void {
  process.stdout.write(
    format === "json"
      ? `${JSON.stringify(data, null, 2)}\n`
      : yaml().stringify(data, { lineWidth: 0 }),
  );
}

/** Prints rows as aligned columns (table), or the data itself as JSON or YAML. */
export function printRows(
  format: OutputFormat,
  data: unknown,
  headers: string[],
  rows: string[][],
): void {
  if (format !== "table") {
    printData(data, format);
    return;
  }
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("   ")
      .trimEnd();
  process.stdout.write(`${[line(headers), ...rows.map(line)].join("\n")}\n`);
}

export function age(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "-";
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}
