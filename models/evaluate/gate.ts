import Type from 'typebox';
import { loadConfigFile } from '../../common/config-file.ts';
import { ArgusError } from '../../common/errors.ts';
import { compileSchema } from '../../common/schema.ts';
import type { EvaluationReport } from './report.ts';

/**
 * The quality gate a derived model must pass before it may be packaged: agreement with its
 * reference and speed relative to it, both from an evaluation report.
 */
export const GateConfigSchema = Type.Object(
  {
    /** lowest acceptable mAP@0.5 against the reference */
    minMap50: Type.Number({ minimum: 0, maximum: 1, default: 0.97 }),
    /** highest acceptable candidate/reference latency ratio */
    maxLatencyRatio: Type.Number({ exclusiveMinimum: 0, default: 0.6 }),
  },
  { additionalProperties: false },
);

export type GateConfig = Type.Static<typeof GateConfigSchema>;

export const gateConfigValidator = compileSchema<GateConfig>(GateConfigSchema);

export const DEFAULT_GATE: GateConfig = { minMap50: 0.97, maxLatencyRatio: 0.6 };

export async function loadGateConfig(file: string): Promise<GateConfig> {
  return (await loadConfigFile(file, gateConfigValidator, 'gate config')).value;
}

export interface GateVerdict {
  passed: boolean;
  /** one sentence per threshold missed, saying by how much */
  failures: string[];
}

export function checkGate(report: EvaluationReport, gate: GateConfig): GateVerdict {
  const failures: string[] = [];
  if (report.map50 < gate.minMap50) {
    failures.push(
      `mAP@0.5 ${report.map50.toFixed(3)} is ${(gate.minMap50 - report.map50).toFixed(3)} below the gate's ${gate.minMap50.toFixed(3)}`,
    );
  }
  const ratio = report.latency.ratio;
  if (ratio > gate.maxLatencyRatio) {
    failures.push(
      `latency ratio ${ratio.toFixed(2)} is ${(ratio - gate.maxLatencyRatio).toFixed(2)} above the gate's ${gate.maxLatencyRatio.toFixed(2)}`,
    );
  }
  return { passed: failures.length === 0, failures };
}

/** throws an ArgusError listing every threshold the candidate misses */
export function enforceGate(report: EvaluationReport, gate: GateConfig): void {
  const verdict = checkGate(report, gate);
  if (verdict.passed) return;
  throw new ArgusError(
    `${report.candidate.name} v${report.candidate.version} does not pass the gate (${report.hardwareClass}):\n  ${verdict.failures.join('\n  ')}`,
    'improve the candidate (calibration, float nodes) or change the gate thresholds deliberately',
  );
}
