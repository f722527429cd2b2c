/** The roles of a user within an organization (zod-free: the CLI lists them too). */
export const ROLES = ["SANDBOX_ADMIN", "SANDBOX_USER"] as const;
export type Role = (typeof ROLES)[number];
