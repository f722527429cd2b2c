import type { WarmPoolConfig } from "../backends/backend.js";
import type { ProfileTemplate } from "../profiles/profile.js";
import { placeSandbox } from "../sandboxes/placement.js";
import type { Runner } from "./runner.js";

/**
 * The warm pools a runner should keep: one per binding with a size, holding
 * shells for the spec a sandbox started from that binding with nothing
 * requested would get. Pure. A binding that cannot be placed gets none.
 */
export function warmPoolsFor(
  runner: Runner,
  profiles: ReadonlyMap<string, ProfileTemplate>,
): WarmPoolConfig[] {
  const pools: WarmPoolConfig[] = [];
  for (const binding of runner.bindings) {
    if (!binding.warmPoolSize) continue;
    try {
      const { launch } = placeSandbox({
        request: { profileIds: [binding.profileTemplateId], runnerIds: [runner.runnerId] },
        organizationId: runner.organizationId,
        userId: "",
        runners: [runner],
        profiles,
        activeSandboxes: new Map(),
        ceiling: { maxCpu: "", maxMemory: "" },
      });
      pools.push({
        profileId: binding.profileTemplateId,
        size: binding.warmPoolSize,
        spec: launch,
      });
    } catch {
      // Its sandboxes fail placement too: nothing to keep warm.
    }
  }
  return pools;
}
