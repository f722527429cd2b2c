/** Defaults the CLI needs too: kept apart from config.ts so that the CLI does not load zod. */
export const DEFAULT_LISTEN = "127.0.0.1:7420";
export const DEFAULT_DATA_DIR = ".paddock";
