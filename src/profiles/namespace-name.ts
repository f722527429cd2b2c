import { createHash } from "node:crypto";
import type { NamespaceConfig } from "./spec-schema.js";

export interface NamespaceIdentity {
  organizationId: string;
  userId: string;
  profileId: string;
  profileDisplayName: string;
}

const MAX_NAME = 63;
const HASH_LENGTH = 6;

/**
 * The Kubernetes namespace a sandbox lands in (CONTRACT section 8):
 * `static` → staticNamespace; otherwise prefix + readable part + "-" + the
 * first 6 hex digits of SHA-256 of the identity, the readable part cut so
 * the whole name fits in 63 characters.
 */
export function namespaceName(config: NamespaceConfig | undefined, who: NamespaceIdentity): string {
  const strategy = config?.strategy || "per-user";
  if (strategy === "static") return config?.staticNamespace ?? "";
  const prefix = config?.namespacePrefix ?? "";
  let readable: string;
  let identity: string;
  if (strategy === "per-org") {
    readable = who.organizationId;
    identity = who.organizationId;
  } else if (strategy === "per-profile") {
    readable = sanitize(who.profileDisplayName);
    identity = `${who.organizationId}/${who.profileId}`;
  } else {
    readable = `${who.organizationId}-${who.userId}`;
    identity = `${who.organizationId}/${who.userId}`;
  }
  const hash = createHash("sha256").update(identity).digest("hex").slice(0, HASH_LENGTH);
  const room = MAX_NAME - prefix.length - 1 - HASH_LENGTH;
  const cut = readable.slice(0, Math.max(0, room)).replace(/-+$/, "");
  const name = cut === "" ? `${prefix}${hash}` : `${prefix}${cut}-${hash}`;
  // A prefix is checked to start with a letter or digit; an empty one leaves the readable part first.
  return name.replace(/^-+/, "");
}

/** Lowercase; every character other than a-z, 0-9 and '-' becomes '-'; runs collapsed. */
export function sanitize(displayName: string): string {
  return displayName
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, "-")
    .replace(/-+/g, "-")
    .replace(/^-+/, "");
}
