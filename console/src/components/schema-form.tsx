import type { ComponentChildren } from 'preact';

/**
 * A form generated from a JSON Schema (the typebox schemas of pipelines/scene, as the control
 * plane serves them): one labelled control per property, by its type — numbers and integers with
 * their bounds, booleans, a choice of literals, a set of literals, lists of names, nested objects
 * as fieldsets. No field is written by hand: a field added to the scene schema appears here.
 */

export interface JsonSchema {
  type?: string;
  const?: unknown;
  anyOf?: JsonSchema[];
  items?: JsonSchema | JsonSchema[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  default?: unknown;
  description?: string;
}

export type Data = Record<string, unknown>;

/** "maxAgeSeconds" → "max age seconds" */
export const humanize = (key: string) =>
  key
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/[-_]/g, ' ')
    .toLowerCase()
    .replace(/^./, (c) => c.toUpperCase());

const literals = (s: JsonSchema): string[] | null =>
  s.anyOf?.every((o) => typeof o.const === 'string') ? s.anyOf.map((o) => o.const as string) : null;

/** a value for every required property (its default, else the least its bounds allow) */
export function initialValue(schema: JsonSchema): unknown {
  if (schema.default !== undefined) return structuredClone(schema.default);
  if (schema.const !== undefined) return schema.const;
  const choice = literals(schema);
  if (choice) return choice[0];
  switch (schema.type) {
    case 'object': {
      const out: Data = {};
      for (const k of schema.required ?? []) out[k] = initialValue(schema.properties![k]!);
      return out;
    }
    case 'number':
    case 'integer': {
      const low = schema.minimum ?? (schema.exclusiveMinimum !== undefined ? schema.exclusiveMinimum + 1 : 0);
      return Math.max(low, Math.min(schema.maximum ?? Number.POSITIVE_INFINITY, 1));
    }
    case 'boolean':
      return false;
    case 'array':
      return Array.isArray(schema.items) ? schema.items.map(initialValue) : [];
    default:
      return '';
  }
}

function Field({
  id,
  label,
  schema,
  required,
  value,
  onChange,
}: {
  id: string;
  label: string;
  schema: JsonSchema;
  required: boolean;
  value: unknown;
  onChange: (v: unknown) => void;
}) {
  const hint = schema.description ? <span class="field-hint">{schema.description}</span> : null;
  const placeholder = schema.default !== undefined ? `default ${JSON.stringify(schema.default)}` : undefined;
  const choice = literals(schema);
  if (choice)
    return (
      <label>
        {label}
        <select value={String(value ?? '')} onChange={(e) => onChange(e.currentTarget.value || undefined)}>
          {required ? null : <option value="">(default)</option>}
          {choice.map((c) => (
            <option key={c} value={c}>
              {c}
            </option>
          ))}
        </select>
        {hint}
      </label>
    );
  if (schema.type === 'number' || schema.type === 'integer') {
    const low = schema.minimum ?? schema.exclusiveMinimum;
    const high = schema.maximum ?? schema.exclusiveMaximum;
    return (
      <label>
        {label}
        <input
          type="number"
          id={id}
          required={required}
          {...(low !== undefined ? { min: low } : {})}
          {...(high !== undefined ? { max: high } : {})}
          step={schema.type === 'integer' ? 1 : 'any'}
          placeholder={placeholder}
          value={typeof value === 'number' ? value : ''}
          onInput={(e) => {
            const raw = e.currentTarget.value;
            onChange(raw === '' ? undefined : Number(raw));
          }}
        />
        {hint}
      </label>
    );
  }
  if (schema.type === 'boolean')
    return (
      <label class="check">
        <input
          type="checkbox"
          id={id}
          checked={value === true || (value === undefined && schema.default === true)}
          onChange={(e) => onChange(e.currentTarget.checked)}
        />
        {label}
        {hint}
      </label>
    );
  if (schema.type === 'array' && !Array.isArray(schema.items) && schema.items) {
    const options = literals(schema.items);
    const list = Array.isArray(value) ? (value as unknown[]) : [];
    if (options)
      return (
        <fieldset class="choices">
          <legend>{label}</legend>
          {options.map((o) => (
            <label key={o} class="check">
              <input
                type="checkbox"
                checked={list.includes(o)}
                onChange={(e) =>
                  onChange(
                    e.currentTarget.checked
                      ? [...list.filter((x) => x !== o), o]
                      : list.filter((x) => x !== o),
                  )
                }
              />
              {o}
            </label>
          ))}
          {hint}
        </fieldset>
      );
    if (schema.items.type === 'string')
      return (
        <label>
          {label} (comma-separated)
          <input
            id={id}
            value={list.join(', ')}
            placeholder={required ? undefined : 'all'}
            onChange={(e) => {
              const names = e.currentTarget.value
                .split(',')
                .map((x) => x.trim())
                .filter(Boolean);
              onChange(names.length ? names : undefined);
            }}
          />
          {hint}
        </label>
      );
  }
  if (schema.type === 'array' && Array.isArray(schema.items)) {
    const list = Array.isArray(value) ? (value as number[]) : (initialValue(schema) as number[]);
    return (
      <fieldset class="choices">
        <legend>{label}</legend>
        {schema.items.map((item, i) => (
          <label key={String(i)}>
            {`${label} ${i + 1}`}
            <input
              type="number"
              step="any"
              {...(item.minimum !== undefined ? { min: item.minimum } : {})}
              {...(item.maximum !== undefined ? { max: item.maximum } : {})}
              value={list[i] ?? ''}
              onInput={(e) => {
                const next = [...list];
                next[i] = Number(e.currentTarget.value);
                onChange(next);
              }}
            />
          </label>
        ))}
        {hint}
      </fieldset>
    );
  }
  if (schema.type === 'object' && schema.properties)
    return (
      <fieldset>
        <legend>{label}</legend>
        <SchemaFields
          idPrefix={id}
          schema={schema}
          value={(value as Data | undefined) ?? {}}
          onChange={(v) => onChange(v)}
        />
      </fieldset>
    );
  return (
    <label>
      {label}
      <input
        id={id}
        required={required}
        {...(schema.pattern ? { pattern: schema.pattern } : {})}
        {...(schema.minLength !== undefined ? { minLength: schema.minLength } : {})}
        {...(schema.maxLength !== undefined ? { maxLength: schema.maxLength } : {})}
        value={typeof value === 'string' ? value : ''}
        onInput={(e) => onChange(e.currentTarget.value === '' ? undefined : e.currentTarget.value)}
      />
      {hint}
    </label>
  );
}

/** the fields of an object schema but `skip` (drawn elsewhere, like a rule's geometry) */
export function SchemaFields({
  idPrefix,
  schema,
  value,
  onChange,
  skip = [],
  children,
}: {
  idPrefix: string;
  schema: JsonSchema;
  value: Data;
  onChange: (v: Data) => void;
  skip?: readonly string[];
  children?: ComponentChildren;
}) {
  const required = new Set(schema.required ?? []);
  return (
    <div class="schema-form">
      {Object.entries(schema.properties ?? {})
        .filter(([k, s]) => !skip.includes(k) && s.const === undefined)
        .map(([k, s]) => (
          <Field
            key={k}
            id={`${idPrefix}-${k}`}
            label={humanize(k)}
            schema={s}
            required={required.has(k)}
            value={value[k]}
            onChange={(v) => {
              const next = { ...value };
              if (v === undefined) delete next[k];
              else next[k] = v;
              onChange(next);
            }}
          />
        ))}
      {children}
    </div>
  );
}
