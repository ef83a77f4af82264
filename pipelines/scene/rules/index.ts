import type { Rule } from '../schema.ts';
import { CrowdingEvaluator } from './crowding.ts';
import { LineEvaluator } from './line.ts';
import { LoiteringEvaluator } from './loitering.ts';
import { StationaryEvaluator } from './stationary.ts';
import type { RuleEvaluator } from './types.ts';
import { WrongWayEvaluator } from './wrong-way.ts';
import { ZoneEvaluator } from './zone.ts';

export type { RuleEvaluator, SceneObject, Transition } from './types.ts';

/** the evaluator of a rule; one module per rule type */
export function createEvaluator(rule: Rule, updateSeconds: number): RuleEvaluator {
  switch (rule.type) {
    case 'zone':
      return new ZoneEvaluator(rule);
    case 'line':
      return new LineEvaluator(rule);
    case 'loitering':
      return new LoiteringEvaluator(rule, updateSeconds);
    case 'crowding':
      return new CrowdingEvaluator(rule, updateSeconds);
    case 'wrong-way':
      return new WrongWayEvaluator(rule);
    case 'stationary':
      return new StationaryEvaluator(rule, updateSeconds);
  }
}
