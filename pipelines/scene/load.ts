import {
  type ConfigDocument,
  describeIssues,
  parseConfigDocument,
  readConfigText,
} from '../../common/config-file.ts';
import { ArgusError } from '../../common/errors.ts';
import { compileSchema, type SchemaIssue, type Validator } from '../../common/schema.ts';
import { RULE_TYPES, type RuleType } from '../../contract/payloads.ts';
import { type Point, polygonArea, selfIntersection } from './geometry.ts';
import { RULE_SCHEMAS, type Rule, type Scene, SceneSchema } from './schema.ts';

const sceneValidator = compileSchema<Omit<Scene, 'rules'> & { rules: { type: string }[] }>(SceneSchema);
const ruleValidators = Object.fromEntries(
  Object.entries(RULE_SCHEMAS).map(([type, schema]) => [type, compileSchema<Rule>(schema)]),
) as Record<RuleType, Validator<Rule>>;

const COORDINATE_HINT =
  'coordinates are fractions of the frame from 0 to 1 (x right, y down), not pixels: divide by the frame width and height';
/** the sections of a scene whose keys an unknown key is listed against */
const SECTION_KEYS: Record<string, readonly string[]> = {
  '': Object.keys(SceneSchema.properties),
  tracker: Object.keys(SceneSchema.properties.tracker.properties),
  motion: Object.keys(SceneSchema.properties.motion.properties),
  snapshots: Object.keys(SceneSchema.properties.snapshots.properties),
};

/**
 * Schema problems, each with what the field expects: the keys allowed where an unknown key is, and
 * for a point out of range that coordinates are fractions of the frame. `ruleType` when the
 * issues are a rule's (at `base`).
 */
function sceneIssues(
  doc: ConfigDocument,
  issues: readonly SchemaIssue[],
  base: (string | number)[] = [],
  ruleType?: RuleType,
): string[] {
  return issues.flatMap((issue) => {
    const lines = describeIssues(doc, [issue], base);
    const path = [...base, ...issue.path.split('/').slice(1)];
    let hint: string | undefined;
    if (issue.unknownKeys) {
      const allowed = ruleType
        ? path.length === base.length
          ? Object.keys(RULE_SCHEMAS[ruleType].properties)
          : undefined
        : SECTION_KEYS[path.join('.')];
      if (allowed)
        hint = `${ruleType ? `a ${ruleType} rule` : path.length > 0 ? path.join('.') : 'a scene'} takes: ${allowed.join(', ')}`;
    } else if (ruleType && path.length === base.length && /^missing required field/.test(issue.message)) {
      const field = /"([^"]+)"/.exec(issue.message)?.[1];
      const schema = field
        ? (RULE_SCHEMAS[ruleType].properties as Record<string, { description?: string }>)[field]
        : undefined;
      if (schema?.description) hint = `${field}: ${schema.description}`;
    } else if (
      ruleType &&
      ['polygon', 'line'].includes(String(path[base.length])) &&
      path.length === base.length + 3 &&
      /must be [<>]/.test(issue.message)
    ) {
      hint = COORDINATE_HINT;
    }
    return hint ? lines.map((l) => `${l}; ${hint}`) : lines;
  });
}

function polygonProblems(
  doc: ConfigDocument,
  path: (string | number)[],
  polygon: readonly Point[],
): string[] {
  const problems: string[] = [];
  const crossing = selfIntersection(polygon);
  if (crossing) {
    const [a, b] = crossing;
    problems.push(
      `  ${doc.locate(path)}: ${path.join('.')}: the polygon crosses itself (edge ${a + 1}→${a + 2 > polygon.length ? 1 : a + 2} crosses edge ${b + 1}→${b + 2 > polygon.length ? 1 : b + 2}); list the vertices in order around the area`,
    );
  } else if (polygonArea(polygon) < 1e-6) {
    problems.push(`  ${doc.locate(path)}: ${path.join('.')}: the polygon has no area`);
  }
  return problems;
}

/**
 * Validates a scene document: the scene's own fields, each rule against the schema of its type
 * (an unknown type is named with the known ones), then geometry (polygons must not cross
 * themselves, lines need two distinct points) and unique rule ids. All problems are reported at
 * once, each with the file, line and column it is at and what the field expects (the keys a rule
 * type takes; that coordinates are fractions of the frame).
 */
export function validateScene(doc: ConfigDocument, labels?: readonly string[]): Scene {
  const base = sceneValidator.withDefaults(doc.data) as Record<string, unknown>;
  const problems = sceneIssues(doc, sceneValidator.issues(base));
  const rawRules = Array.isArray(base.rules) ? (base.rules as Record<string, unknown>[]) : [];
  const rules: Rule[] = [];
  const ids = new Map<string, number>();
  rawRules.forEach((raw, i) => {
    const type = raw?.type;
    if (typeof type !== 'string' || !(RULE_TYPES as readonly string[]).includes(type)) {
      problems.push(
        `  ${doc.locate(['rules', i, 'type'])}: rules.${i}.type: unknown rule type ${JSON.stringify(type)} (known: ${RULE_TYPES.join(', ')})`,
      );
      return;
    }
    const validator = ruleValidators[type as RuleType];
    const rule = validator.withDefaults(raw) as Rule;
    const issues = validator.issues(rule);
    if (issues.length > 0) {
      problems.push(...sceneIssues(doc, issues, ['rules', i], type as RuleType));
      return;
    }
    if ('polygon' in rule && rule.polygon)
      problems.push(...polygonProblems(doc, ['rules', i, 'polygon'], rule.polygon));
    if (rule.type === 'line') {
      const [a, b] = rule.line;
      if (a[0] === b[0] && a[1] === b[1])
        problems.push(`  ${doc.locate(['rules', i, 'line'])}: rules.${i}.line: the two points are the same`);
    }
    if (rule.type === 'wrong-way' && rule.direction[0] === 0 && rule.direction[1] === 0) {
      problems.push(`  ${doc.locate(['rules', i, 'direction'])}: rules.${i}.direction: must not be [0, 0]`);
    }
    const first = ids.get(rule.id);
    if (first !== undefined) {
      problems.push(
        `  ${doc.locate(['rules', i, 'id'])}: rules.${i}.id: "${rule.id}" is already used by rules.${first}`,
      );
    } else {
      ids.set(rule.id, i);
    }
    if (labels) {
      for (const [k, c] of (rule.classes ?? []).entries()) {
        if (!labels.includes(c))
          problems.push(
            `  ${doc.locate(['rules', i, 'classes', k])}: rules.${i}.classes.${k}: the model has no class "${c}"`,
          );
      }
    }
    rules.push(rule);
  });
  if (labels && Array.isArray(base.classes)) {
    for (const [k, c] of (base.classes as string[]).entries()) {
      if (!labels.includes(c))
        problems.push(`  ${doc.locate(['classes', k])}: classes.${k}: the model has no class "${c}"`);
    }
  }
  if (problems.length > 0) throw new ArgusError(`scene ${doc.file} is invalid:\n${problems.join('\n')}`);
  return { ...(base as Omit<Scene, 'rules'>), rules };
}

export function parseScene(text: string, file: string, labels?: readonly string[]): Scene {
  return validateScene(parseConfigDocument(text, file, 'scene'), labels);
}

/** reads and validates a scene file (see validateScene); `labels` checks class names against the model */
export async function loadScene(file: string, labels?: readonly string[]): Promise<Scene> {
  return parseScene(await readConfigText(file, 'scene'), file, labels);
}

/**
 * Refuses a scene that names classes the model does not have (a scene loaded for another model):
 * every class of the scene and of its rules, listed at once.
 */
export function checkSceneLabels(scene: Scene, labels: readonly string[], where: string): void {
  const used = [...(scene.classes ?? []), ...scene.rules.flatMap((r) => r.classes ?? [])];
  const missing = [...new Set(used.filter((c) => !labels.includes(c)))];
  if (missing.length > 0) {
    throw new ArgusError(
      `${where}: scene "${scene.name}" uses classes the model does not have: ${missing.join(', ')}`,
      'apply a scene for this model first, or choose a model that detects these classes',
    );
  }
}
