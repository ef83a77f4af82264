import type { IClientOptions, MqttClient } from 'mqtt';
import {
  type Command,
  topics,
  type UpdateAssignment,
  type UpdateState,
  type UpdateStatus,
} from '../../contract/index.ts';
import { identityOf, updateStatus } from './rollout-setup.ts';
import { deviceClient } from './setup.ts';

/** how a simulated box answers an assignment */
export type Answer = 'commit' | 'fail-shadow' | 'roll-back' | 'silent';

const STEPS: UpdateState[] = ['queued', 'downloading', 'verifying', 'shadow', 'installing', 'health'];

/**
 * A box's MQTT side of updates, without the updater: it connects with its own credential,
 * publishes its identity, takes `update` and `update-cancel` from its command topic and answers
 * each assignment on its update topic (QoS 1) step by step, ending as its `answer` says. The
 * control plane sees it the way it sees a real box (the real updater is ota/updater).
 */
export class SimulatedBox {
  readonly assignments: UpdateAssignment[] = [];
  readonly cancels: string[] = [];
  readonly sent: UpdateStatus[] = [];
  private readonly canceled = new Set<string>();

  private constructor(
    readonly device: string,
    private readonly client: MqttClient,
    public answer: Answer,
    private readonly stepMs: number,
  ) {}

  static async connect(
    url: string,
    device: string,
    answer: Answer,
    stepMs = 20,
    options: IClientOptions = {},
  ): Promise<SimulatedBox> {
    const client = await deviceClient(url, device, options);
    // connected: a broker that goes away later is reconnected to (reconnectPeriod), not the end
    client.removeAllListeners('error');
    client.on('error', () => undefined);
    const box = new SimulatedBox(device, client, answer, stepMs);
    await client.subscribeAsync(topics.commandFilter(device), { qos: 1 });
    client.on('message', (topic, payload) => {
      const command = JSON.parse(payload.toString()) as Command;
      if (topic === topics.command(device, 'update'))
        void box.take(command.args as unknown as UpdateAssignment);
      if (topic === topics.command(device, 'update-cancel')) {
        const id = (command.args as { assignment: string }).assignment;
        box.cancels.push(id);
        box.canceled.add(id);
      }
    });
    await client.publishAsync(topics.identity(device), JSON.stringify(identityOf(device)), {
      qos: 1,
      retain: true,
    });
    return box;
  }

  /** publishes one status for an assignment */
  async publish(status: UpdateStatus): Promise<void> {
    this.sent.push(status);
    await this.client.publishAsync(topics.update(this.device), JSON.stringify(status), { qos: 1 });
  }

  private async take(a: UpdateAssignment): Promise<void> {
    if (this.assignments.some((x) => x.assignment === a.assignment)) return; // a resend
    this.assignments.push(a);
    if (this.answer === 'silent') return;
    const ref = { device: this.device, assignment: a.assignment, rollout: a.rollout, artifact: a.artifact };
    let seq = 0;
    for (const state of STEPS) {
      if (this.canceled.has(a.assignment) && seq < 4) {
        await this.publish(updateStatus(ref, seq, 'canceled', 'update-cancel received before install'));
        return;
      }
      if (state === 'shadow' && a.artifact.kind !== 'model') continue;
      if (state === 'shadow' && this.answer === 'fail-shadow') {
        await this.publish(updateStatus(ref, seq, 'failed', 'shadow agreement 0.31 below the minimum 0.8'));
        return;
      }
      await this.publish(updateStatus(ref, seq++, state));
      await new Promise((r) => setTimeout(r, this.stepMs));
    }
    await this.publish(
      this.answer === 'roll-back'
        ? updateStatus(ref, seq, 'rolled-back', 'detect fps 0.41× before, below 0.8×')
        : updateStatus(ref, seq, 'committed'),
    );
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }
}
