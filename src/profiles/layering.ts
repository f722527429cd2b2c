import type { ProfileSpec } from "./spec-schema.js";

/** Spec fields whose maps merge key by key across layers; every other field replaces as a whole. */
const KEYED_FIELDS = new Set<keyof ProfileSpec>(["resourceDefaults", "nodeSelector"]);

/**
 * Layers canonical specs, lowest first: zoneDefaults → profile → binding
 * overrides → sandbox request. A field present in a higher layer replaces
 * the lower one's; `resourceDefaults` and `nodeSelector` merge key by key;
 * `namespace`, `network` and `pod` replace as wholes.
 */
export function layerSpecs(...layers: ProfileSpec[]): ProfileSpec {
  const out: Record<string, unknown> = {};
  for (const layer of layers) {
    for (const [key, value] of Object.entries(layer)) {
      if (value === undefined) continue;
      const below = out[key];
      out[key] =
        KEYED_FIELDS.has(key as keyof ProfileSpec) && below !== undefined
          ? { ...(below as object), ...(value as object) }
          : value;
    }
  }
  return out as ProfileSpec;
}
