import { startTestApp } from "../../test/support/app.js";
import { backendSuite } from "../../test/support/backend-suite.js";

/** The backend suite on the embedded local runner (bubblewrap). */
backendSuite({
  name: "local",
  start: () => startTestApp({ kind: "memory" }, { localRunner: true }),
});
