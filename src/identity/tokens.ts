import { createHash, randomBytes, randomUUID } from "node:crypto";

const TOKEN_PREFIX = "pdk_";

/** A new bearer secret: shown once, stored only as its hash. */
export function newTokenSecret(): string {
  return TOKEN_PREFIX + randomBytes(32).toString("base64url");
}

export function newTokenId(): string {
  return randomUUID();
}

/**
 * SHA-256 is enough here: secrets are 256 random bits, so there is nothing
 * to brute-force, and a fast hash keeps authentication off the hot path.
 */
export function hashToken(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}
