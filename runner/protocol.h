/*
 * protocol.h -- the frames between the host (host/isolation/) and
 * km-plugin-host, the child process that runs one plugin.
 *
 * Every frame is a fixed header, then rid_len bytes of request id, key_len
 * bytes of key id and data_len bytes of data. Both ends run on the same
 * machine, so integers are in native byte order. The Python side reads the
 * #defines below from this file: this is the one place they are defined.
 *
 * Host -> child: CREATE (handle = factory index, data = config JSON; the
 * reply's handle is the new manager), WRAP / UNWRAP / PUBLIC_KEY / PROBE
 * (handle = manager), DESTROY. Every request gets exactly one reply with the
 * same call_id and op; status is a KM_* code, data the output on KM_OK and
 * the error message otherwise. A request's status field carries the host's
 * log threshold (a KM_LOG_* level; 0 = unchanged), which the child sets as
 * km_host.log_level before the call.
 * Child -> host, unsolicited: HELLO once at start (status KM_OK and the
 * descriptor, or an error and the reason), LOG (status = level).
 * HELLO's descriptor is NUL-terminated fields: plugin name, version,
 * "major.minor", then capabilities (decimal) and manager name per factory.
 */
#ifndef KM_RUNNER_PROTOCOL_H
#define KM_RUNNER_PROTOCOL_H

#include <stdint.h>

#define KMI_MAGIC 0x314d4b49
#define KMI_HEADER_SIZE 28
#define KMI_MAX_TEXT 255
#define KMI_MAX_DATA 16777216

#define KMI_OP_CREATE 1
#define KMI_OP_WRAP 2
#define KMI_OP_UNWRAP 3
#define KMI_OP_PUBLIC_KEY 4
#define KMI_OP_PROBE 5
#define KMI_OP_DESTROY 6
#define KMI_OP_HELLO 16
#define KMI_OP_LOG 17

struct kmi_header {
    uint32_t magic;
    uint32_t call_id;
    uint32_t handle;
    uint32_t timeout_ms; /* 0 = no deadline */
    uint16_t op;
    uint16_t status;
    uint16_t rid_len;
    uint16_t key_len;
    uint32_t data_len;
};

#endif
