import { api } from './api.ts';
import type { CommandAnswer } from './types.ts';

const COMMAND_WAIT_MS = 20_000;

/** sends a command and waits for the device's answer (polling GET /api/v1/commands/:id) */
export async function runCommand(
  device: string,
  name: string,
  args: Record<string, unknown>,
): Promise<CommandAnswer> {
  const sent = await api<CommandAnswer>(`/api/v1/devices/${encodeURIComponent(device)}/commands/${name}`, {
    method: 'POST',
    body: { args },
  });
  const deadline = Date.now() + COMMAND_WAIT_MS;
  let c = sent;
  while (!c.result && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 500));
    c = await api<CommandAnswer>(`/api/v1/commands/${encodeURIComponent(sent.id)}`);
  }
  return c;
}
