import { type Kysely, type Migration, type MigrationProvider, sql } from "kysely";

/**
 * Versioned migrations, applied in name order at start-up. Never edit one
 * that has shipped: add the next.
 */
const migrations: Record<string, Migration> = {
  "0001_identity_profiles_runners": {
    async up(db: Kysely<unknown>) {
      for (const statement of [
        `create table organizations (
            organization_id text primary key,
            display_name text not null,
            max_cpu text not null default '',
            max_memory text not null default '',
            created_at timestamptz not null,
            updated_at timestamptz not null
          )`,
        `create table users (
            organization_id text not null references organizations on delete cascade,
            user_id text not null,
            role text not null,
            platform_admin boolean not null default false,
            created_at timestamptz not null,
            primary key (organization_id, user_id)
          )`,
        `create table profile_templates (
            id uuid primary key,
            organization_id text not null references organizations on delete cascade,
            display_name text not null,
            description text not null,
            labels jsonb not null,
            spec jsonb not null,
            created_at timestamptz not null,
            updated_at timestamptz not null,
            unique (organization_id, display_name)
          )`,
        `create index profile_templates_page on profile_templates (organization_id, created_at, id)`,
        `create table runners (
            organization_id text not null references organizations on delete cascade,
            runner_id text not null,
            display_name text not null,
            zone text not null,
            cluster_id text not null default '',
            release_channel text not null,
            zone_defaults jsonb not null,
            connection_status text not null default 'DISCONNECTED',
            last_heartbeat_at timestamptz,
            backend text not null default '',
            agent_version text not null default '',
            created_at timestamptz not null,
            updated_at timestamptz not null,
            primary key (organization_id, runner_id)
          )`,
        `create unique index runners_cluster on runners (organization_id, cluster_id) where cluster_id <> ''`,
        `create table runner_bindings (
            organization_id text not null,
            runner_id text not null,
            position integer not null,
            profile_template_id uuid not null references profile_templates (id) on delete restrict,
            profile_name text not null,
            is_default boolean not null,
            overrides_json text not null,
            overrides jsonb not null,
            primary key (organization_id, runner_id, position),
            unique (organization_id, runner_id, profile_template_id),
            foreign key (organization_id, runner_id) references runners on delete cascade
          )`,
        `create index runner_bindings_profile on runner_bindings (profile_template_id)`,
        `create table api_tokens (
            token_id text primary key,
            token_hash text not null unique,
            organization_id text not null references organizations on delete cascade,
            user_id text,
            runner_id text,
            created_at timestamptz not null,
            last_used_at timestamptz,
            foreign key (organization_id, user_id) references users on delete cascade,
            foreign key (organization_id, runner_id) references runners on delete cascade,
            check ((user_id is null) <> (runner_id is null))
          )`,
      ]) {
        await sql.raw(statement).execute(db);
      }
    },
  },
  "0002_sandboxes": {
    async up(db: Kysely<unknown>) {
      for (const statement of [
        `create table sandboxes (
            sandbox_id uuid primary key,
            organization_id text not null,
            user_id text not null,
            runner_id text not null,
            profile_id uuid not null,
            profile_name text not null,
            status text not null,
            status_reason text not null,
            desired text not null,
            graceful_shutdown_seconds integer not null,
            spec jsonb not null,
            tags jsonb not null,
            applied_egress_mode text not null,
            applied_ingress_mode text not null,
            service_address text not null,
            exposed_ports jsonb not null,
            exit_code integer,
            started_at timestamptz,
            expires_at timestamptz not null,
            created_at timestamptz not null,
            updated_at timestamptz not null,
            foreign key (organization_id, runner_id) references runners on delete cascade
          )`,
        `create index sandboxes_page on sandboxes (organization_id, created_at, sandbox_id)`,
        `create index sandboxes_runner on sandboxes (organization_id, runner_id)`,
      ]) {
        await sql.raw(statement).execute(db);
      }
    },
  },
  "0003_binding_warm_pools": {
    async up(db: Kysely<unknown>) {
      await sql
        .raw("alter table runner_bindings add column warm_pool_size integer not null default 0")
        .execute(db);
    },
  },
};

export const migrationProvider: MigrationProvider = {
  async getMigrations() {
    return migrations;
  },
};
