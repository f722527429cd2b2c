import type { ColumnType } from "kysely";

/** Row types of the tables that migrations.ts creates. */

type Timestamp = ColumnType<Date, Date, Date>;
/** jsonb: written as a JSON string (pg would turn a JS array into a Postgres array), read back parsed. */
type Json<T> = ColumnType<T, string, string>;

export interface OrganizationsTable {
  organization_id: string;
  display_name: string;
  max_cpu: string;
  max_memory: string;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface UsersTable {
  organization_id: string;
  user_id: string;
  role: string;
  platform_admin: boolean;
  created_at: Timestamp;
}

export interface ApiTokensTable {
  token_id: string;
  token_hash: string;
  organization_id: string;
  user_id: string | null;
  runner_id: string | null;
  created_at: Timestamp;
  last_used_at: Timestamp | null;
}

export interface ProfileTemplatesTable {
  id: string;
  organization_id: string;
  display_name: string;
  description: string;
  labels: Json<Record<string, string>>;
  spec: Json<Record<string, unknown>>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface RunnersTable {
  organization_id: string;
  runner_id: string;
  display_name: string;
  zone: string;
  cluster_id: string;
  release_channel: string;
  zone_defaults: Json<Record<string, unknown>>;
  connection_status: string;
  last_heartbeat_at: Timestamp | null;
  backend: string;
  agent_version: string;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface RunnerBindingsTable {
  organization_id: string;
  runner_id: string;
  position: number;
  profile_template_id: string;
  profile_name: string;
  is_default: boolean;
  overrides_json: string;
  overrides: Json<Record<string, unknown>>;
  warm_pool_size: number;
}

export interface SandboxesTable {
  sandbox_id: string;
  organization_id: string;
  user_id: string;
  runner_id: string;
  profile_id: string;
  profile_name: string;
  status: string;
  status_reason: string;
  desired: string;
  graceful_shutdown_seconds: number;
  spec: Json<Record<string, unknown>>;
  tags: Json<string[]>;
  applied_egress_mode: string;
  applied_ingress_mode: string;
  service_address: string;
  exposed_ports: Json<number[]>;
  exit_code: number | null;
  started_at: Timestamp | null;
  expires_at: Timestamp;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface Database {
  sandboxes: SandboxesTable;
  organizations: OrganizationsTable;
  users: UsersTable;
  api_tokens: ApiTokensTable;
  profile_templates: ProfileTemplatesTable;
  runners: RunnersTable;
  runner_bindings: RunnerBindingsTable;
}
