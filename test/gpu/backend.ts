// The backend the device suite (npm run test:gpu) tests: hip by default, or
// the one GRETA_TEST_BACKEND names. `run_remote --verify` sets it to the run's
// --backend, so on a host without a GPU the cpu backend stands in and the same
// suite, the same checks, run on it; auto resolves as the trace does.
import { resolveBackendKind, type BackendKind } from '../../src/native.js';

const KINDS = ['hip', 'cpu', 'auto'] as const;

export function deviceBackend(): BackendKind {
  const v = process.env.GRETA_TEST_BACKEND ?? 'hip';
  if (!(KINDS as readonly string[]).includes(v)) {
    throw new Error(`GRETA_TEST_BACKEND: '${v}' is not a backend for the device suite (allowed: ${KINDS.join(', ')})`);
  }
  return resolveBackendKind(v as (typeof KINDS)[number]);
}
