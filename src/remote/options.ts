// Options of scripts/run_remote.sh: HOST DATE [options]. Every value is
// checked here, before anything runs, against a strict pattern; the first bad
// one becomes a UsageError naming the flag, the value and what is allowed.
// Values that reach a shell (the remote command line, rsync's -e) are then
// only ever used single-quoted (see quote.ts), but the patterns alone already
// keep out every character a shell would interpret.
import { accessSync, constants, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { allowed, UsageError } from '../errors.js';
import { MODEL_NAMES } from '../model/models.js';
import { PROMPT_NAMES } from '../prompts.js';

export const REMOTE_BACKENDS = ['hip', 'cpu', 'auto'] as const;
export const DEFAULT_PROMPTS = 'p0_short,p4_sys,p6_long';
export const DEFAULT_REMOTE_DIR = 'gretacore-runs';

const HOSTNAME = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*$/;
const USER = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const SAFE_PATH = /^[A-Za-z0-9_./+-]+$/;
/** GRETA_TRACE_* values: lists of names and numbers, as the trace options take them. */
const TRACE_ENV_NAME = /^GRETA_TRACE_[A-Z0-9_]+$/;
const TRACE_ENV_VALUE = /^[A-Za-z0-9_.,:+-]*$/;

export function isHost(s: string): boolean {
  const at = s.lastIndexOf('@');
  const user = at >= 0 ? s.slice(0, at) : undefined;
  const name = at >= 0 ? s.slice(at + 1) : s;
  if (user !== undefined && !USER.test(user)) return false;
  if (name.length > 253) return false;
  const ip = IPV4.exec(name);
  if (ip) return ip.slice(1).every((o) => Number(o) <= 255);
  return HOSTNAME.test(name) && !/^[\d.]+$/.test(name);
}

export function isDate(s: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s);
  if (!m) return false;
  const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
  return d.toISOString().slice(0, 10) === s;
}

/** A relative or absolute path of plain components: no '..', no '~', no shell characters. */
function isPlainPath(s: string): boolean {
  return SAFE_PATH.test(s) && !s.startsWith('-') && !s.split('/').some((c) => c === '..');
}

const list = (s: string) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x.length > 0);

function check<T>(ok: (s: string) => boolean, message: (s: string) => string, map: (s: string) => T) {
  return z.string().transform((s, ctx): T => {
    if (!ok(s)) {
      ctx.addIssue({ code: 'custom', message: message(s) });
      return z.NEVER;
    }
    return map(s);
  });
}

const id = (s: string) => s;

const namesList = <T extends string>(what: string, names: readonly T[]) =>
  z.string().transform((s, ctx): T[] => {
    const items = list(s);
    const bad = items.find((x) => !(names as readonly string[]).includes(x));
    if (items.length === 0 || bad !== undefined) {
      ctx.addIssue({ code: 'custom', message: `${bad === undefined ? 'empty list' : `unknown ${what} '${bad}'`} (${allowed(names)})` });
      return z.NEVER;
    }
    return [...new Set(items)] as T[];
  });

const existingFile = (s: string) => {
  if (!isPlainPath(s)) return false;
  try {
    accessSync(s, constants.R_OK);
    return statSync(s).isFile();
  } catch {
    return false;
  }
};

export const RemoteOptionsSchema = z.object({
  host: check(
    isHost,
    (s) => `'${s}' is not a host (allowed: [user@]hostname of letters, digits, dots and hyphens, or an IPv4 address)`,
    id,
  ),
  date: check(isDate, (s) => `'${s}' is not a date (allowed: YYYY-MM-DD, a real calendar day)`, id),
  prompts: namesList('prompt', PROMPT_NAMES),
  exp: namesList('experiment', ['E1', 'E0'] as const),
  model: check(
    (s) => MODEL_NAMES.includes(s) || (s.startsWith('/') && isPlainPath(s)),
    (s) => `'${s}' is not a model (allowed: ${MODEL_NAMES.join(', ')}, or an absolute path of letters, digits and ._+-/)`,
    id,
  ),
  block: check(
    (s) => /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(s),
    (s) => `'${s}' is not a block name (allowed: letters, digits, '_' and '-', e.g. b3_41)`,
    id,
  ),
  backend: check(
    (s) => (REMOTE_BACKENDS as readonly string[]).includes(s),
    (s) => `'${s}' is not a backend (${allowed(REMOTE_BACKENDS)})`,
    (s) => s as (typeof REMOTE_BACKENDS)[number],
  ),
  gpuTargets: check(
    (s) => /^[a-z0-9_]+(,[a-z0-9_]+)*$/.test(s),
    (s) => `'${s}' is not a list of GPU targets (allowed: e.g. gfx942 or gfx90a,gfx942)`,
    (s) => s.split(','),
  ).optional(),
  remoteDir: check(
    isPlainPath,
    (s) => `'${s}' is not a remote directory (allowed: a path of letters, digits and ._+-/, relative to the remote home or absolute; no '..')`,
    (s) => s.replace(/\/+$/, '') || '/',
  ),
  remotePath: check(
    (s) => /^[A-Za-z0-9_./+-]+(:[A-Za-z0-9_./+-]+)*$/.test(s),
    (s) => `'${s}' is not a PATH list (allowed: directories of letters, digits and ._+-/ separated by ':')`,
    id,
  ).optional(),
  artifacts: z.string().min(1, 'empty directory').transform((s) => resolve(s)),
  sshConfig: check(existingFile, (s) => `'${s}' is not a readable file with a plain name (letters, digits, ._+-/)`, (s) => resolve(s)).optional(),
  identity: check(existingFile, (s) => `'${s}' is not a readable file with a plain name (letters, digits, ._+-/)`, (s) => resolve(s)).optional(),
  port: check(
    (s) => /^\d{1,5}$/.test(s) && Number(s) >= 1 && Number(s) <= 65535,
    (s) => `'${s}' is not a port (allowed: 1-65535)`,
    Number,
  ).optional(),
  slurm: z.boolean(),
  partition: check((s) => /^[A-Za-z0-9_.-]{1,64}$/.test(s), (s) => `'${s}' is not a partition name (allowed: letters, digits, '_', '.', '-')`, id).optional(),
  account: check((s) => /^[A-Za-z0-9_.-]{1,64}$/.test(s), (s) => `'${s}' is not an account name (allowed: letters, digits, '_', '.', '-')`, id).optional(),
  time: check((s) => /^(\d{1,3}-)?\d{1,3}(:\d{2}){0,2}$/.test(s), (s) => `'${s}' is not a Slurm time limit (allowed: e.g. 60, 01:00:00, 1-00:00:00)`, id),
  gpus: check((s) => /^([A-Za-z0-9_]{1,32}:)?\d{1,2}$/.test(s), (s) => `'${s}' is not a GPU count (allowed: N or TYPE:N, e.g. 1 or mi300x:1)`, id),
  dryRun: z.boolean(),
  noRsync: z.boolean(),
  verify: z.boolean(),
  noVerify: z.boolean(),
  traceEnv: z.array(z.tuple([z.string(), z.string()])).transform((kvs, ctx) => {
    for (const [k, v] of kvs) {
      if (!TRACE_ENV_NAME.test(k) || !TRACE_ENV_VALUE.test(v)) {
        ctx.addIssue({
          code: 'custom',
          message: `${k}='${v}' cannot be passed to the remote (allowed: GRETA_TRACE_[A-Z0-9_]+ set to letters, digits and ._,:+-)`,
        });
        return z.NEVER;
      }
    }
    return kvs;
  }),
});

export type RemoteOptions = z.output<typeof RemoteOptionsSchema>;

/** Flags, their schema key, help line and default. */
const FLAGS = {
  prompts: { key: 'prompts', v: 'a,b', def: DEFAULT_PROMPTS, help: `built-in prompts (${PROMPT_NAMES.join(', ')})` },
  exp: { key: 'exp', v: 'E1[,E0]', def: 'E1', help: 'experiments' },
  model: { key: 'model', v: 'M', def: 'synthetic:tiny', help: `model (${MODEL_NAMES.join(', ')}, or an absolute path on the host)` },
  block: { key: 'block', v: 'NAME', def: 'b3_41', help: 'block name: names the artifact directory and files' },
  backend: { key: 'backend', v: 'B', def: 'hip', help: 'hip: npm ci + npm run build:hip, traces on hip; cpu: npm ci only, traces on cpu; auto: build:hip when the host has hipcc or nvcc, traces on auto' },
  'gpu-targets': { key: 'gpuTargets', v: 'LIST', def: undefined, help: 'AMD targets for build:hip (default gfx942, MI300X), e.g. gfx90a,gfx942' },
  'remote-dir': { key: 'remoteDir', v: 'DIR', def: DEFAULT_REMOTE_DIR, help: 'runs go to DIR/DATE/BLOCK/<run id> on the host (relative to the remote home)' },
  'remote-path': { key: 'remotePath', v: 'DIRS', def: undefined, help: "prepended to PATH on the host (e.g. /opt/rocm/bin:/opt/node/bin), for node/npm/hipcc outside a non-interactive shell's PATH" },
  artifacts: { key: 'artifacts', v: 'DIR', def: '', help: 'local artifact root (default: artifacts_remote in the repository): runs land in DIR/DATE/BLOCK/run-N, never overwriting one' },
  'ssh-config': { key: 'sshConfig', v: 'FILE', def: undefined, help: 'ssh_config to use (ssh -F): Host aliases, ports, keys, known_hosts' },
  port: { key: 'port', v: 'N', def: undefined, help: 'ssh port' },
  identity: { key: 'identity', v: 'FILE', def: undefined, help: 'ssh private key (ssh -i)' },
  slurm: { key: 'slurm', v: undefined, def: undefined, help: 'HOST is a Slurm login node: npm ci there, then sbatch --wait a job that builds and runs the matrix with srun' },
  partition: { key: 'partition', v: 'P', def: undefined, help: 'Slurm partition (sbatch --partition)' },
  account: { key: 'account', v: 'A', def: undefined, help: 'Slurm account (sbatch --account)' },
  time: { key: 'time', v: 'T', def: '01:00:00', help: 'Slurm time limit (sbatch --time)' },
  gpus: { key: 'gpus', v: 'N', def: '1', help: 'GPUs for the job (sbatch --gpus)' },
  verify: {
    key: 'verify',
    v: undefined,
    def: undefined,
    help: 'after the build, run the device suite (npm run test:gpu: every op against cpu-fp64, invariance, E1) on the host on --backend, and stop before the traces if it fails (default with hip and auto; with cpu, cpu stands in for the device)',
  },
  'no-verify': { key: 'noVerify', v: undefined, def: undefined, help: 'skip the device suite' },
  'no-rsync': { key: 'noRsync', v: undefined, def: undefined, help: 'pull with tar over ssh even when both sides have rsync' },
  'dry-run': { key: 'dryRun', v: undefined, def: undefined, help: 'print every command (ssh, rsync, remote steps, sbatch/srun) and execute none' },
} as const;

export const REMOTE_HELP = [
  'usage: scripts/run_remote.sh HOST DATE [options]      (or: npm run remote -- HOST DATE [options])',
  '',
  'Ships git HEAD (git archive) to a new run directory on HOST over ssh, builds it there,',
  'runs the trace matrix (prompts x experiments), records the commit, hostname and GPU,',
  'pulls the artifacts to <artifacts>/DATE/BLOCK/run-N and prints the analysis table.',
  '',
  '  HOST  [user@]hostname, IPv4 address or ssh_config Host alias',
  '  DATE  YYYY-MM-DD: groups the runs of one day, locally and on the host',
  '',
  'options:',
  ...Object.entries(FLAGS).map(([flag, f]) => {
    const left = `--${flag}${f.v ? ` ${f.v}` : ''}`;
    return `  ${left.padEnd(22)} ${f.help}${f.def ? ` (default ${f.def})` : ''}`;
  }),
  '  --help                 this text',
  '',
  'GRETA_TRACE_* variables set here are passed to every remote trace.',
  'Exit codes: 0 ok, 2 bad input, 3 ssh failed, 4 tool missing on the host, 5 build failed,',
  '6 a trace failed, 7 pulling or analyzing failed, 8 the device suite (--verify) failed.',
  'After a failure, whatever artifacts came back stay in the run directory.',
].join('\n');

/** Parses argv (after the script name); throws UsageError on the first bad value. */
export function parseRemoteArgs(argv: string[], env: NodeJS.ProcessEnv, defaultArtifacts: string): RemoteOptions | 'help' {
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
  for (const [flag, f] of Object.entries(FLAGS)) options[flag] = { type: f.v ? 'string' : 'boolean' };
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0]!.replace(/\. To specify.*$/, '') + ' (see --help)');
  }
  const { values, positionals } = parsed;
  if (values.help) return 'help';
  if (positionals.length !== 2) {
    const what = positionals.length < 2 ? 'give HOST and DATE' : `unexpected argument '${positionals[2]}'`;
    throw new UsageError(`${what} (usage: run_remote.sh HOST DATE [options]; see --help)`);
  }
  const raw: Record<string, unknown> = { host: positionals[0], date: positionals[1] };
  for (const [flag, f] of Object.entries(FLAGS)) {
    const v = values[flag];
    if (v !== undefined) raw[f.key] = v;
    else if (f.def !== undefined) raw[f.key] = f.key === 'artifacts' ? defaultArtifacts : f.def;
    else if (!f.v) raw[f.key] = false;
  }
  raw.traceEnv = Object.entries(env)
    .filter(([k, v]) => k.startsWith('GRETA_TRACE_') && v !== undefined)
    .sort(([a], [b]) => a.localeCompare(b));
  const r = RemoteOptionsSchema.safeParse(raw);
  if (!r.success) {
    const iss = r.error.issues[0]!;
    const key = String(iss.path[0]);
    const name =
      key === 'host' ? 'HOST' : key === 'date' ? 'DATE' : key === 'traceEnv' ? 'environment' : `--${Object.entries(FLAGS).find(([, f]) => f.key === key)![0]}`;
    throw new UsageError(`${name}: ${iss.message}`);
  }
  const o = r.data;
  if (!o.slurm) {
    for (const flag of ['partition', 'account'] as const) {
      if (values[flag] !== undefined) throw new UsageError(`--${flag}: only with --slurm`);
    }
  }
  if (o.verify && o.noVerify) throw new UsageError('--verify and --no-verify: give one of them, not both');
  // The device suite runs unless skipped; on cpu only when asked for.
  return { ...o, verify: o.verify || (!o.noVerify && o.backend !== 'cpu') };
}
