import { createRequire } from "node:module";
import type * as Commander from "commander";

// Required, not imported: commander is CommonJS, and importing it as an ES
// module makes Node scan its source first, about 8 ms of every command.
const commander = createRequire(import.meta.url)("commander") as typeof Commander;

export const { Command, CommanderError, Option } = commander;
export type Command = Commander.Command;
export type CommanderError = Commander.CommanderError;
export type Option = Commander.Option;
