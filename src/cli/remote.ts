#!/usr/bin/env node
// run_remote: scripts/run_remote.sh HOST DATE [options] (npm run remote -- ...).
// Bad input: one line on stderr, exit 2, nothing executed. A failed run: one
// line naming the step, and the exit code of its kind (see --help).
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import { packageRoot } from '../native.js';
import { parseRemoteArgs, REMOTE_HELP } from '../remote/options.js';
import { RemoteFailure, runRemote } from '../remote/run.js';

async function main(argv: string[]): Promise<number> {
  const root = packageRoot();
  try {
    const o = parseRemoteArgs(argv, process.env, join(root, 'artifacts_remote'));
    if (o === 'help') {
      console.log(REMOTE_HELP);
      return 0;
    }
    await runRemote(o, {
      root,
      stdout: (s) => process.stdout.write(s.endsWith('\n') ? s : s + '\n'),
      stderr: (s) => process.stderr.write(s + '\n'),
    });
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`run_remote: ${e.message}`);
      return 2;
    }
    if (e instanceof RemoteFailure) {
      console.error(`run_remote: ${e.message}`);
      return e.exitCode;
    }
    console.error(`run_remote: ${(e as Error).stack ?? e}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
