import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { runCli, type ServerProcess, startServerProcess, tempDir } from "./support/process.js";
import { seedProfiles, seedRunner } from "./support/seeds.js";

const EVERY_BLOCK = fileURLToPath(new URL("./fixtures/every-block.yaml", import.meta.url));

/** The real ./bin/paddock against a real `paddock serve`. */
describe("CLI end to end", () => {
  let server: ServerProcess;
  let env: Record<string, string>;
  let work: string;
  const cli = (args: string[], extra: { env?: Record<string, string>; input?: string } = {}) =>
    runCli(args, {
      env: { ...env, ...extra.env },
      ...(extra.input !== undefined ? { input: extra.input } : {}),
    });
  const ok = async (
    args: string[],
    extra: { env?: Record<string, string>; input?: string } = {},
  ) => {
    const r = await cli(args, extra);
    expect(r.code, `paddock ${args.join(" ")}\n${r.stderr}`).toBe(0);
    return r.stdout;
  };

  beforeAll(async () => {
    server = await startServerProcess();
    work = tempDir();
    env = {
      PADDOCK_SERVER: server.url,
      PADDOCK_TOKEN: server.token(),
      PADDOCK_CONFIG: join(work, "config.json"),
    };
  });
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
  });

  it("takes a profile using every block through create -f → get -o json → edit -f with nothing lost", async () => {
    const source = parse(readFileSync(EVERY_BLOCK, "utf8"));
    const id = (await ok(["sandbox", "profile", "create", "-f", EVERY_BLOCK])).trim();
    expect(id).toMatch(/^[0-9a-f-]{36}$/);

    const first = JSON.parse(await ok(["sandbox", "profile", "get", id, "-o", "json"]));
    expect(first).toMatchObject({
      id,
      displayName: "everything",
      description: source.description,
      labels: source.labels,
    });
    expect(first.spec).toMatchObject({
      containerImage: source.spec.container_image,
      runtimeClass: source.spec.runtime_class,
      resourceDefaults: source.spec.resource_defaults,
      instanceTypes: [],
      nodeSelector: source.spec.node_selector,
      tags: source.spec.tags,
    });
    // Proto-facing: the three sub-blocks are JSON strings holding exactly what was given.
    expect(JSON.parse(first.spec.namespaceConfigJson)).toEqual(source.spec.namespace);
    expect(JSON.parse(first.spec.networkConfigJson)).toEqual(source.spec.network);
    expect(JSON.parse(first.spec.podTemplateJson)).toEqual(source.spec.pod);

    const file = join(work, "edit.json");
    writeFileSync(file, JSON.stringify(first, null, 2));
    await ok(["sandbox", "profile", "edit", id, "-f", file]);
    const second = JSON.parse(await ok(["sandbox", "profile", "get", id, "-o", "json"]));
    expect(second.spec).toEqual(first.spec);
    expect({ ...second, updatedAt: "" }).toEqual({ ...first, updatedAt: "" });

    const asYaml = parse(await ok(["sandbox", "profile", "get", "everything", "-o", "yaml"]));
    expect(asYaml).toEqual(second);
  });

  it("edit through $EDITOR: saving unchanged changes nothing; a saved change is applied", async () => {
    const id = (
      await ok(["sandbox", "profile", "create", "-f", "-"], {
        input: "displayName: editable\nspec: {}\n",
      })
    ).trim();
    const before = JSON.parse(await ok(["sandbox", "profile", "get", id, "-o", "json"]));
    expect(await ok(["sandbox", "profile", "edit", id], { env: { EDITOR: "true" } })).toContain(
      "no changes",
    );
    const unchanged = JSON.parse(await ok(["sandbox", "profile", "get", id, "-o", "json"]));
    expect(unchanged.updatedAt).toBe(before.updatedAt);

    const editor = join(work, "editor.sh");
    writeFileSync(
      editor,
      "#!/bin/sh\nsed -i 's/^description: .*/description: edited in vi/' \"$1\"\n",
      { mode: 0o755 },
    );
    await ok(["sandbox", "profile", "edit", id], { env: { EDITOR: editor } });
    const after = JSON.parse(await ok(["sandbox", "profile", "get", id, "-o", "json"]));
    expect(after.description).toBe("edited in vi");
  });

  it("accepts the seed bodies from files, and binds them with a runner", async () => {
    const ids: Record<string, string> = {};
    for (const text of seedProfiles()) {
      const file = join(work, "seed.json");
      writeFileSync(file, text);
      ids[JSON.parse(text).profileTemplate.displayName] = (
        await ok(["sandbox", "profile", "create", "-f", file])
      ).trim();
    }
    const runner = seedRunner()
      .replace("[YOUR-CKS-CLUSTER-ID]", "cks-e2e")
      .replace("[CI-TEST-RUNNER-ID]", ids["ci-test-runner"] ?? "")
      .replace("[DS-GPU-H100-ID]", ids["ds-gpu-h100"] ?? "")
      .replace("[AGENT-ALLOWLIST-ID]", ids["agent-allowlist"] ?? "")
      .replace("[UNTRUSTED-EXEC-ID]", ids["untrusted-exec"] ?? "")
      .replace("[WORKER-INTERNAL-SVC-ID]", ids["worker-internal-svc"] ?? "");
    expect((await ok(["sandbox", "runner", "create", "-f", "-"], { input: runner })).trim()).toBe(
      "shared-runner-us-east-1",
    );
    const table = await ok(["sandbox", "runner", "get"]);
    expect(table).toMatch(/shared-runner-us-east-1\s+us-east-1\s+DISCONNECTED/);
    expect(table).toContain("ci-test-runner*,gpu,agent,untrusted,worker");

    // Deleting a bound profile fails, naming the runner.
    const bound = await cli(["sandbox", "profile", "delete", ids["ds-gpu-h100"] ?? ""]);
    expect(bound.code).toBe(1);
    expect(bound.stderr).toContain("shared-runner-us-east-1");
    expect(bound.stderr).toContain("PROFILE_BOUND");
  });

  it("runner edit through $EDITOR renders structured YAML and keeps everything when saved unchanged", async () => {
    expect(await ok(["sandbox", "runner", "edit", "local"], { env: { EDITOR: "true" } })).toContain(
      "no changes",
    );
    const editor = join(work, "runner-editor.sh");
    writeFileSync(editor, "#!/bin/sh\nsed -i 's/^displayName: .*/displayName: renamed/' \"$1\"\n", {
      mode: 0o755,
    });
    await ok(["sandbox", "runner", "edit", "local"], { env: { EDITOR: editor } });
    const runner = JSON.parse(await ok(["sandbox", "runner", "get", "local", "-o", "json"]));
    expect(runner.displayName).toBe("renamed");
    expect(runner.profileBindings).toEqual([
      {
        profileTemplateId: expect.any(String),
        profileName: "default",
        isDefault: true,
        overridesJson: "",
      },
    ]);
  });

  it("exits 1 with the problem on stderr for unreadable input, duplicate keys and refused calls", async () => {
    const dup = await cli(["sandbox", "profile", "create", "-f", "-"], {
      input: "displayName: a\ndisplayName: b\nspec: {}\n",
    });
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/displayName/);
    const dupJson = await cli(["sandbox", "profile", "create", "-f", "-"], {
      input: '{"displayName":"a","spec":{},"spec":{}}',
    });
    expect(dupJson.code).toBe(1);
    expect(dupJson.stderr).toContain('duplicate key "spec"');
    const bad = await cli(["sandbox", "profile", "create", "-f", "-"], {
      input: JSON.stringify({
        displayName: "bad",
        spec: {
          network: {
            egress: {
              default: "allow",
              modes: { internet: { type: "internet" }, none: { type: "none" } },
            },
          },
        },
      }),
    });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("spec.network.egress.default");
    expect(bad.stderr).toContain("internet, none");
    const missing = await cli(["sandbox", "profile", "create", "-f", join(work, "nope.yaml")]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("nope.yaml");
    const notFound = await cli(["sandbox", "profile", "get", "no-such-profile"]);
    expect(notFound.code).toBe(1);
    expect(notFound.stderr).toContain("no-such-profile");
  });

  it("exits 2 on usage errors", async () => {
    expect((await cli(["sandbox", "profile", "create"])).code).toBe(2);
    expect((await cli(["sandbox", "profile", "get", "-o", "xml"])).code).toBe(2);
    expect((await cli(["no-such-command"])).code).toBe(2);
    expect((await cli(["--help"])).code).toBe(0);
  });

  it("admin commands create an organization and a user whose printed token works; login saves it", async () => {
    expect((await ok(["admin", "org", "create", "e2e-org"])).trim()).toBe("e2e-org");
    const token = (
      await ok(["admin", "user", "create", "zed", "--org", "e2e-org", "--role", "SANDBOX_ADMIN"])
    ).trim();
    expect(token).toMatch(/^pdk_/);
    const config = join(work, "login.json");
    const noFlags = { PADDOCK_CONFIG: config, PADDOCK_SERVER: "", PADDOCK_TOKEN: "" };
    await ok(["--server", server.url, "--token", token, "login"], { env: noFlags });
    expect(JSON.parse(readFileSync(config, "utf8"))).toEqual({ server: server.url, token });
    const list = await ok(["sandbox", "profile", "get", "-o", "json"], { env: noFlags });
    expect(JSON.parse(list)).toEqual([]);
    const wrong = await cli(["--token", "pdk_wrong", "login", "--server", server.url], {
      env: noFlags,
    });
    expect(wrong.code).not.toBe(0);
  });
});
