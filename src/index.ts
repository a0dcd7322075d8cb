// The library: what the CLI does, as typed functions (src/api/, one module a
// command; the CLI is argv, printing and exit codes over them). Options are
// the CLI's, typed (arrays, numbers, booleans), and go through the same zod
// schemas, so a bad value is the same UsageError naming it and what is
// allowed. Every device buffer and file a call opens is released before it
// returns.
export { analyze, type AnalyzeInput, type AnalyzeOutput } from './api/analyze.js';
export { compare, type CompareInput, type CompareOutput } from './api/compare.js';
export { report, type ReportInput, type ReportOutput } from './api/report.js';
export { faults, selftest, type SelftestInput } from './api/selftest.js';
export { trace, type TraceInput, type TraceOutput } from './api/trace.js';

export type { Analysis, ReportRow } from './analyze/analyze.js';
export type { OracleVerdict } from './analyze/oracle.js';
export type { CompareOptions, CompareResult } from './compare/compare.js';
export { UsageError } from './errors.js';
export { FAULT_NAMES, type FaultName } from './faults.js';
export type { ReportData, ReportSection } from './report/data.js';
export type { Timing } from './rss.js';
export type { FaultListing, SelftestResult } from './selftest.js';
export { POINTS, STAGE_POINTS, type Point } from './trace/points.js';
export type { KvCheckRecord, RunResult } from './trace/schema.js';
