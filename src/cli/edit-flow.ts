import { yaml } from "../lazy-yaml.js";
import { describeFailure } from "./context.js";
import { editText } from "./editor.js";
import { parseDocumentText, readDocument } from "./input.js";

export interface EditFlow {
  /** `-f FILE`, or undefined to open $EDITOR. */
  file: string | undefined;
  /** The object as the user edits it (structured YAML). */
  current(): Promise<unknown>;
  send(document: unknown): Promise<void>;
  fileName: string;
}

/**
 * `edit ID -f FILE` sends the file; `edit ID` opens $EDITOR on the
 * structured YAML and sends what was saved, or nothing if it was saved
 * unchanged. A failed save keeps the edited file and says where it is.
 */
export async function runEdit(flow: EditFlow): Promise<"sent" | "unchanged"> {
  if (flow.file !== undefined) {
    await flow.send(readDocument(flow.file));
    return "sent";
  }
  const text = yaml().stringify(await flow.current(), { lineWidth: 0 });
  const session = editText(text, flow.fileName);
  if (session.edited === undefined) {
    session.cleanup();
    return "unchanged";
  }
  try {
    await flow.send(parseDocumentText(session.edited, session.file));
  } catch (error) {
    process.stderr.write(`${describeFailure(error)}\nyour edit is kept in ${session.file}\n`);
    throw Object.assign(new Error("edit not saved"), { reported: true });
  }
  session.cleanup();
  return "sent";
}
