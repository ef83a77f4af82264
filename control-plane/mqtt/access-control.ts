/**
 * What the control plane tells the broker when a device's credential changes. The embedded broker
 * checks credentials against the repository itself and needs no such calls beyond `revoke`
 * (which disconnects the device's sessions); an external broker (Mosquitto's dynamic security
 * plugin) is given each device's client, password and ACL here.
 */
export interface BrokerAccessControl {
  /**
   * the broker checks device passwords itself and must be given each device's secret (Mosquitto);
   * false when it checks them against the repository (the embedded broker)
   */
  readonly checksSecrets: boolean;
  /** the device may connect as itself with `secret` (its new credential), and only as itself */
  grant(device: string, secret: string): Promise<void>;
  /** the device may no longer connect; its open connections are closed */
  revoke(device: string): Promise<void>;
}
