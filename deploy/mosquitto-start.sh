#!/bin/sh
# Starts Mosquitto for docker-compose.yml. At the first start (no dynamic-security file in the data
# volume yet) it creates the plugin's file whose only client is the admin "argus-admin" with the
# password in ARGUS_BROKER_ADMIN_PASSWORD; the control plane adds everything else. Changing that
# variable later does not change the admin's password: remove the file (or use mosquitto_ctrl).
set -eu
file=/mosquitto/data/dynamic-security.json
if [ ! -f "$file" ]; then
  : "${ARGUS_BROKER_ADMIN_PASSWORD:?is not set}"
  mosquitto_ctrl dynsec init "$file" argus-admin "$ARGUS_BROKER_ADMIN_PASSWORD" >/dev/null
  chown mosquitto:mosquitto "$file"
  chmod 600 "$file"
fi
exec /usr/sbin/mosquitto -c /mosquitto/config/mosquitto.conf
