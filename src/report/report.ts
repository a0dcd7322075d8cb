// greta report: the analysis of trace files as one self-contained HTML page.
import { writeFileSync } from 'node:fs';
import { UsageError } from '../errors.js';
import type { ReportOptions } from '../spec.js';
import { buildReport, type ReportData } from './data.js';
import { renderHtml } from './html.js';

export interface ReportOutput {
  /** The HTML file written. */
  out: string;
  bytes: number;
  /** What the page shows, as built from the analyzer. */
  data: ReportData;
  /** The analyzer's exit code: 0 every row a real comparison, 3 a row INCOMPLETE or NO_DATA. */
  exit: number;
}

export function writeReport(files: string[], opts: ReportOptions): ReportOutput {
  if (files.length === 0) throw new UsageError('report: give at least one trace .jsonl file');
  const data = buildReport({ files, compare: opts.compare, tol: opts.tol, oracleTol: opts.oracleTol });
  const html = renderHtml(data);
  try {
    writeFileSync(opts.out, html);
  } catch (e) {
    throw new UsageError(`--out: cannot write '${opts.out}' (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  return { out: opts.out, bytes: Buffer.byteLength(html), data, exit: data.exit };
}
