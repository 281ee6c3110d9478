/*
 * km-plugin-host -- run one key-manager plugin in its own process.
 *
 *     km-plugin-host SOCKET_FD MEMORY_MB MAX_OUTPUT WORKERS LOG_LEVEL PLUGIN_PATH
 *
 * The host (host/isolation/) starts this with one end of a Unix socket pair
 * and speaks the frames of protocol.h over it. Whatever the plugin does --
 * crash, abort, hang, lie about out_len -- happens in this process; the host
 * notices, fails the calls in flight and starts a new one.
 *
 * WORKERS threads (the main thread among them) take turns reading a request
 * and run it (a manager whose factory is not thread-safe is called by one at
 * a time), writing the reply. EOF on the socket means the host is gone: exit.
 *
 * To the plugin this is an ABI 1.1 host, like the in-process one
 * (host/loader.py): km_host.log_level is the host's threshold (LOG_LEVEL at
 * start, then each request's), create_ex gets the call's deadline, and a
 * result after the deadline, even KM_OK, is deadline exceeded.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "keymanager.h"
#include "protocol.h"

_Static_assert(sizeof(struct kmi_header) == KMI_HEADER_SIZE, "header layout");

/* A plugin must have the 1.0 fields; the 1.1 ones are used when present. */
#define SIZE_UP_TO(type, last) (offsetof(type, last) + sizeof(((type *)0)->last))

#define MAX_MANAGERS 4096
#define MAX_ERROR 1024
#define MAX_LOG 4096

static int sock = -1;
static size_t max_output;
static const km_plugin *plugin;
static km_host host; /* log_level is updated from each request */
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- frames ------------------------------------------------------------- */

/* Requests are read through one buffer, by one worker at a time (the reader role):
 * one read() usually brings a whole request, where reading header, request
 * id, key id and data took up to four. Bytes are wiped once copied out (a
 * wrap's input is a plaintext key). */
static uint8_t inbuf[64 * 1024];
static size_t in_start, in_end; /* unread: inbuf[in_start, in_end) */

static int take(void *dst, size_t n)
{
    uint8_t *d = dst;
    while (n > 0) {
        if (in_start == in_end) {
            in_start = in_end = 0;
            int direct = n >= sizeof inbuf; /* a large config or input: straight into place */
            ssize_t r = read(sock, direct ? (void *)d : (void *)inbuf, direct ? n : sizeof inbuf);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return -1;
            if (direct) {
                d += r;
                n -= (size_t)r;
                continue;
            }
            in_end = (size_t)r;
        }
        size_t k = in_end - in_start < n ? in_end - in_start : n;
        memcpy(d, inbuf + in_start, k);
        explicit_bzero(inbuf + in_start, k);
        in_start += k;
        d += k;
        n -= k;
    }
    return 0;
}

/* One frame, written whole under write_lock so replies never interleave. */
static void send_frame(uint32_t call_id, uint16_t op, uint16_t status, uint32_t handle,
                       const char *rid, const void *data, size_t data_len)
{
    size_t rid_len = rid ? strnlen(rid, KMI_MAX_TEXT) : 0;
    struct kmi_header h = {KMI_MAGIC, call_id, handle, 0, op, status, (uint16_t)rid_len, 0, (uint32_t)data_len};
    struct iovec iov[3] = {{&h, sizeof h}, {(void *)rid, rid_len}, {(void *)data, data_len}};
    int n = 3;
    struct iovec *v = iov;
    pthread_mutex_lock(&write_lock);
    while (n > 0) {
        ssize_t w = writev(sock, v, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            _exit(3); /* the host is gone */
        while (n > 0 && (size_t)w >= v->iov_len) {
            w -= (ssize_t)v->iov_len;
            v++;
            n--;
        }
        if (n > 0) {
            v->iov_base = (uint8_t *)v->iov_base + w;
            v->iov_len -= (size_t)w;
        }
    }
    pthread_mutex_unlock(&write_lock);
}

static void send_error(uint32_t call_id, uint16_t op, int32_t status, const char *fmt, ...)
{
    char msg[MAX_ERROR];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    send_frame(call_id, op, (uint16_t)status, 0, NULL, msg, strlen(msg));
}

/* km_host.log: plugin log lines travel to the host with their request id. */
static void host_log(void *ctx, int32_t level, const char *request_id, const char *message)
{
    (void)ctx;
    if (message != NULL)
        send_frame(0, KMI_OP_LOG, (uint16_t)level, 0, request_id, message, strnlen(message, MAX_LOG));
}

/* ---- managers ------------------------------------------------------------- */

struct slot {
    km_manager *mgr;           /* NULL: free */
    const km_factory *factory;
    pthread_rwlock_t life;     /* calls read-lock, destroy write-locks */
    pthread_mutex_t serial;    /* taken around calls when not thread-safe */
};

static struct slot slots[MAX_MANAGERS];
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- the workers -------------------------------------------------------------
 * One worker at a time holds the reader role: it reads a request and runs it
 * itself, then reads the next, so a call costs no hand-off between threads.
 * Should a request outlast a tick of the watcher thread (PROMOTE_MS: a KMS
 * round trip, a hung plugin), the watcher passes the role to an idle worker,
 * which reads the requests that come meanwhile; the first one joins the idle
 * ones when done. So a request that arrives while another runs waits for it
 * at most 1-2 ticks. Handing the role over before every request instead woke
 * a second thread per call, ~10 us of the round trip on 2 cores, and a
 * per-request timer (timerfd) cost as much to arm and disarm in a VM
 * (docs/performance.md). Once it has seen a request outlast a tick, the watcher
 * stops ticking and waits in poll for the next request to arrive (then it
 * passes the role, at once) or for that request to end (inline_end kicks an
 * eventfd): ticking through a 5 ms KMS call woke it 5-6 times per call, and
 * passing the role on every slow call woke a second worker per call and moved
 * each call to another thread (~150 us of CPU per aws-kms call in this VM).
 * The watcher sleeps after IDLE_TICKS without work. */

#define PROMOTE_MS 1
#define IDLE_TICKS 200

static pthread_mutex_t role_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t role_free = PTHREAD_COND_INITIALIZER;
static pthread_cond_t watcher_wake = PTHREAD_COND_INITIALIZER;
static int role_held;       /* a worker holds the reader role */
static int running;         /* ... and is running the request it read */
static uint64_t started;    /* requests run by role holders */
static uint64_t role_epoch; /* +1 each time the role changes hands */
static int watcher_asleep;
static int watcher_polling; /* the watcher waits in poll for the running slow request */
static int watcher_kick = -1; /* eventfd: the slow request ended (inline_end), stop waiting */
static int hand_over_now;   /* no watcher: the role passes on before each request (a plain pool) */
static __thread int timed;  /* this worker runs a request holding the role */
static __thread uint64_t my_epoch; /* the role_epoch at which this worker took the role */

static void pass_role(void) /* role_lock held */
{
    running = 0;
    role_held = 0;
    role_epoch++;
    pthread_cond_signal(&role_free);
}

/* After reading a request: run it holding the role (with one worker, or no
 * watcher, there is nothing to wait for). */
static void inline_begin(void)
{
    pthread_mutex_lock(&role_lock);
    if (hand_over_now) {
        pass_role();
    } else {
        running = 1;
        started++;
        timed = 1;
        if (watcher_asleep) {
            watcher_asleep = 0;
            pthread_cond_signal(&watcher_wake);
        }
    }
    pthread_mutex_unlock(&role_lock);
}

/* The plugin returned: called before the reply is written, since the host,
 * woken by the reply, often preempts this thread before it gets further. */
static void inline_end(void)
{
    if (!timed)
        return;
    timed = 0;
    pthread_mutex_lock(&role_lock);
    if (role_epoch == my_epoch) { /* else the watcher passed the role on: `running` is the new holder's */
        running = 0;
        if (watcher_polling) { /* it waits for this request: let it go back to ticking */
            watcher_polling = 0;
            uint64_t one = 1;
            if (write(watcher_kick, &one, sizeof one) < 0) { /* full or failed: it wakes anyway */ }
        }
    }
    pthread_mutex_unlock(&role_lock);
}

static void *watcher(void *arg)
{
    (void)arg;
    const struct timespec tick = {0, PROMOTE_MS * 1000000L};
    uint64_t seen = 0;
    int idle = 0;
    pthread_mutex_lock(&role_lock);
    for (;;) {
        if (idle >= IDLE_TICKS) {
            watcher_asleep = 1;
            while (watcher_asleep)
                pthread_cond_wait(&watcher_wake, &role_lock);
            idle = 0;
        }
        pthread_mutex_unlock(&role_lock);
        nanosleep(&tick, NULL);
        pthread_mutex_lock(&role_lock);
        if (running && started == seen && watcher_kick >= 0) {
            /* The same request as a tick ago, a slow one (a KMS round trip): instead of ticking
             * through it, wait in poll until the next request arrives (then let another worker
             * read it) or this one ends (inline_end kicks). No hand-off when nothing is waiting:
             * the worker that ran it reads the next request. */
            watcher_polling = 1;
            pthread_mutex_unlock(&role_lock);
            struct pollfd ready[2] = {{sock, POLLIN, 0}, {watcher_kick, POLLIN, 0}};
            poll(ready, 2, -1); /* EOF or an error on the socket also end it: the next reader sees them */
            uint64_t n;
            if (ready[1].revents && read(watcher_kick, &n, sizeof n) < 0) { /* nothing to clear */ }
            pthread_mutex_lock(&role_lock);
            watcher_polling = 0;
            if (running && started == seen)
                pass_role();
        } else if (running && started == seen) { /* no eventfd: pass the role after the tick, as before */
            pass_role();
        }
        idle = !running && started == seen ? idle + 1 : 0;
        seen = started;
    }
    return NULL;
}

/* ---- one request ------------------------------------------------------------- */

struct job {
    struct kmi_header h;
    struct timespec received;
    char rid[KMI_MAX_TEXT + 1];
    char key[KMI_MAX_TEXT + 1];
    uint8_t *data;
};

static uint32_t time_left(const struct job *j)
{
    if (j->h.timeout_ms == 0)
        return 0;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t spent = (now.tv_sec - j->received.tv_sec) * 1000 + (now.tv_nsec - j->received.tv_nsec) / 1000000;
    return spent >= (int64_t)j->h.timeout_ms ? 0 : (uint32_t)(j->h.timeout_ms - spent);
}

/* A result after the deadline is deadline exceeded, even KM_OK (keymanager.h rule 5). */
static int late(const struct job *j)
{
    return j->h.timeout_ms != 0 && time_left(j) == 0;
}

/* Reply with what the plugin returned, then release it through its free:
 * the output wiped first (it may be a key), never read past the cap. */
static void reply(const struct job *j, int32_t st, uint32_t handle, uint8_t *out, size_t out_len, char *err)
{
    if (st < 0 || st > UINT16_MAX)
        send_error(j->h.call_id, j->h.op, KM_ERR_INTERNAL,
                   "returned status %d, which is not a KM_* status code (plugin bug)", (int)st);
    else if (st == KM_OK && late(j))
        send_error(j->h.call_id, j->h.op, KM_ERR_DEADLINE_EXCEEDED, "answered after the call's deadline");
    else if (st == KM_OK && out == NULL && j->h.op != KMI_OP_PROBE && j->h.op != KMI_OP_CREATE)
        send_error(j->h.call_id, j->h.op, KM_ERR_INTERNAL, "plugin returned OK with a NULL output (plugin bug)");
    else if (st == KM_OK && out != NULL && out_len > max_output)
        send_error(j->h.call_id, j->h.op, KM_ERR_INTERNAL,
                   "plugin returned out_len %zu, above the %zu-byte output cap (plugin bug)", out_len, max_output);
    else if (st == KM_OK)
        send_frame(j->h.call_id, j->h.op, KM_OK, handle, NULL, out, out ? out_len : 0);
    else if (err != NULL)
        send_frame(j->h.call_id, j->h.op, (uint16_t)st, 0, NULL, err, strnlen(err, MAX_ERROR));
    else
        send_frame(j->h.call_id, j->h.op, (uint16_t)st, 0, NULL, NULL, 0);
    if (out != NULL) {
        if (out_len <= max_output)
            explicit_bzero(out, out_len);
        (plugin->free)(out);
    }
    if (err != NULL) {
        explicit_bzero(err, strnlen(err, MAX_ERROR));
        (plugin->free)(err);
    }
}

static void do_create(const struct job *j)
{
    if (j->h.handle >= plugin->factory_count) {
        send_error(j->h.call_id, j->h.op, KM_ERR_INTERNAL, "no factory #%u", j->h.handle);
        return;
    }
    const km_factory *f = plugin->factories[j->h.handle];
    km_manager *mgr = NULL;
    char *err = NULL;
    int32_t st;
    km_call_ctx ctx = {sizeof ctx, time_left(j), j->rid};
    if (j->h.timeout_ms != 0 && ctx.timeout_ms == 0)
        st = KM_ERR_DEADLINE_EXCEEDED; /* spent its time waiting in the queue */
    else if (f->struct_size >= SIZE_UP_TO(km_factory, create_ex) && f->create_ex != NULL)
        st = f->create_ex(&ctx, (const char *)j->data, j->h.data_len, &mgr, &err);
    else
        st = f->create((const char *)j->data, j->h.data_len, &mgr, &err);
    inline_end();
    if (st == KM_OK && mgr != NULL && late(j)) {
        f->ops->destroy(mgr); /* the host has given up on it; reply() says deadline exceeded */
        reply(j, KM_OK, 0, NULL, 0, err);
        return;
    }
    if (st == KM_OK && mgr == NULL) {
        reply(j, KM_ERR_INTERNAL, 0, NULL, 0, NULL);
        return;
    }
    if (st != KM_OK) {
        reply(j, st, 0, NULL, 0, err);
        return;
    }
    pthread_mutex_lock(&slots_lock);
    uint32_t i = 0;
    while (i < MAX_MANAGERS && slots[i].mgr != NULL)
        i++;
    if (i < MAX_MANAGERS) {
        slots[i].mgr = mgr;
        slots[i].factory = f;
    }
    pthread_mutex_unlock(&slots_lock);
    if (i == MAX_MANAGERS) {
        f->ops->destroy(mgr);
        send_error(j->h.call_id, j->h.op, KM_ERR_UNAVAILABLE, "more than %d live managers", MAX_MANAGERS);
        return;
    }
    reply(j, KM_OK, i + 1, NULL, 0, err);
}

static void do_call(const struct job *j)
{
    uint32_t i = j->h.handle - 1;
    if (j->h.handle == 0 || i >= MAX_MANAGERS) {
        send_error(j->h.call_id, j->h.op, KM_ERR_INTERNAL, "no manager #%u", j->h.handle);
        return;
    }
    struct slot *s = &slots[i];
    pthread_rwlock_t *life = &s->life;
    if (j->h.op == KMI_OP_DESTROY)
        pthread_rwlock_wrlock(life);
    else
        pthread_rwlock_rdlock(life);
    km_manager *mgr = s->mgr;
    if (mgr == NULL) {
        pthread_rwlock_unlock(life);
        send_error(j->h.call_id, j->h.op, KM_ERR_UNAVAILABLE, "manager #%u is closed", j->h.handle);
        return;
    }
    const km_manager_ops *ops = s->factory->ops;
    if (j->h.op == KMI_OP_DESTROY) {
        ops->destroy(mgr);
        s->mgr = NULL;
        pthread_rwlock_unlock(life);
        reply(j, KM_OK, 0, NULL, 0, NULL);
        return;
    }
    int serial = !(s->factory->capabilities & KM_CAP_THREAD_SAFE);
    if (serial)
        pthread_mutex_lock(&s->serial);
    km_call_ctx ctx = {sizeof ctx, time_left(j), j->rid};
    uint8_t *out = NULL;
    size_t out_len = 0;
    char *err = NULL;
    int32_t st;
    if (j->h.timeout_ms != 0 && ctx.timeout_ms == 0)
        st = KM_ERR_DEADLINE_EXCEEDED; /* spent its time waiting in the queue */
    else if (j->h.op == KMI_OP_WRAP && ops->wrap)
        st = ops->wrap(mgr, &ctx, j->key, j->data, j->h.data_len, &out, &out_len, &err);
    else if (j->h.op == KMI_OP_UNWRAP && ops->unwrap)
        st = ops->unwrap(mgr, &ctx, j->key, j->data, j->h.data_len, &out, &out_len, &err);
    else if (j->h.op == KMI_OP_PUBLIC_KEY && ops->get_public_key)
        st = ops->get_public_key(mgr, &ctx, j->key, &out, &out_len, &err);
    else if (j->h.op == KMI_OP_PROBE && ops->probe)
        st = ops->probe(mgr, &ctx, &err);
    else
        st = KM_ERR_UNIMPLEMENTED;
    if (serial)
        pthread_mutex_unlock(&s->serial);
    pthread_rwlock_unlock(life);
    inline_end();
    reply(j, st, 0, out, out_len, err);
}

static struct job *read_job(void)
{
    struct job *j = calloc(1, sizeof *j);
    if (j == NULL || take(&j->h, sizeof j->h) != 0)
        _exit(0); /* EOF: the host closed its end */
    clock_gettime(CLOCK_MONOTONIC, &j->received);
    if (j->h.magic != KMI_MAGIC || j->h.rid_len > KMI_MAX_TEXT || j->h.key_len > KMI_MAX_TEXT ||
        j->h.data_len > KMI_MAX_DATA)
        _exit(5); /* not our protocol: nothing sensible to answer */
    j->data = malloc(j->h.data_len ? j->h.data_len : 1);
    if (j->data == NULL || take(j->rid, j->h.rid_len) != 0 || take(j->key, j->h.key_len) != 0 ||
        take(j->data, j->h.data_len) != 0)
        _exit(0);
    return j;
}

static void run(struct job *j)
{
    if (j->h.status != 0) /* a request's status field carries the host's log threshold */
        __atomic_store_n(&host.log_level, (int32_t)j->h.status, __ATOMIC_RELAXED);
    if (j->h.op == KMI_OP_CREATE)
        do_create(j);
    else
        do_call(j);
    explicit_bzero(j->data, j->h.data_len); /* configs and plaintext keys */
    free(j->data);
    free(j);
}

static void *worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&role_lock);
    for (;;) {
        while (role_held)
            pthread_cond_wait(&role_free, &role_lock);
        role_held = 1;
        my_epoch = ++role_epoch;
        pthread_mutex_unlock(&role_lock);
        for (;;) { /* holding the reader role */
            struct job *j = read_job();
            inline_begin();
            run(j); /* do_create and do_call end the timed part before replying */
            inline_end();
            pthread_mutex_lock(&role_lock);
            if (role_epoch != my_epoch)
                break; /* the role was passed on meanwhile: wait with the idle ones */
            pthread_mutex_unlock(&role_lock);
        }
    }
    return NULL;
}

/* ---- start-up ---------------------------------------------------------------- */

/* The checks without which calling the plugin would crash this process; the
 * host checks names (UTF-8, duplicates). NULL when the descriptor is usable. */
static const char *check_plugin(const km_plugin *p, char *why, size_t n)
{
    static const uint32_t fn_caps[] = {KM_CAP_WRAP, KM_CAP_UNWRAP, KM_CAP_PUBLIC_KEY, KM_CAP_PROBE};
    if (p == NULL)
        return "km_plugin_init returned NULL (the plugin refused to load; see its log output)";
    if (p->abi_major != KM_ABI_VERSION_MAJOR) {
        snprintf(why, n, "built for key-manager ABI %u.%u; this host supports ABI %d.x "
                 "(rebuild the plugin against this keymanager.h)", p->abi_major, p->abi_minor, KM_ABI_VERSION_MAJOR);
        return why;
    }
    if (p->struct_size < SIZE_UP_TO(km_plugin, free))
        return "km_plugin.struct_size is smaller than ABI 1.0's";
    if (p->free == NULL)
        return "km_plugin.free is NULL (the host needs it to release plugin buffers)";
    if (p->plugin_name == NULL || p->plugin_version == NULL)
        return "plugin_name or plugin_version is NULL";
    if (p->factories == NULL || p->factory_count < 1 || p->factory_count > 64)
        return "must offer 1..64 factories";
    for (size_t i = 0; i < p->factory_count; i++) {
        const km_factory *f = p->factories[i];
        if (f == NULL || f->struct_size < SIZE_UP_TO(km_factory, ops) || f->manager_name == NULL || f->create == NULL ||
            f->ops == NULL || f->ops->struct_size < SIZE_UP_TO(km_manager_ops, destroy) || f->ops->destroy == NULL) {
            snprintf(why, n, "factory #%zu is incomplete (NULL factory, name, create, ops or destroy, "
                     "or a struct_size smaller than ABI 1.0's)", i);
            return why;
        }
        void *fns[] = {(void *)f->ops->wrap, (void *)f->ops->unwrap, (void *)f->ops->get_public_key,
                       (void *)f->ops->probe};
        for (size_t k = 0; k < 4; k++)
            if ((f->capabilities & fn_caps[k]) && fns[k] == NULL) {
                snprintf(why, n, "manager '%.64s': a capability is set but its function is NULL", f->manager_name);
                return why;
            }
    }
    return NULL;
}

static void hello(void)
{
    char buf[64 * (KMI_MAX_TEXT + 16) + 3 * (KMI_MAX_TEXT + 1)];
    size_t n = 0;
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%.255s", plugin->plugin_name) + 1;
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%.255s", plugin->plugin_version) + 1;
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%u.%u", plugin->abi_major, plugin->abi_minor) + 1;
    for (size_t i = 0; i < plugin->factory_count; i++) {
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%u", plugin->factories[i]->capabilities) + 1;
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%.255s", plugin->factories[i]->manager_name) + 1;
    }
    send_frame(0, KMI_OP_HELLO, KM_OK, 0, NULL, buf, n);
}

static void limit_self(long memory_mb)
{
    /* A plugin cannot gain privileges (setuid helpers, file capabilities). */
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (memory_mb > 0) {
        struct rlimit r = {(rlim_t)memory_mb << 20, (rlim_t)memory_mb << 20};
        setrlimit(RLIMIT_AS, &r);
    }
    struct rlimit no_core = {0, 0}; /* a crash must not write key material to disk */
    setrlimit(RLIMIT_CORE, &no_core);
    signal(SIGPIPE, SIG_IGN);
    /* No PR_SET_PDEATHSIG: it fires when the host *thread* that started us
     * exits. EOF on the socket ends this process when the host goes. */
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s SOCKET_FD MEMORY_MB MAX_OUTPUT WORKERS LOG_LEVEL PLUGIN_PATH\n", argv[0]);
        return 2;
    }
    sock = atoi(argv[1]);
    max_output = strtoull(argv[3], NULL, 10);
    int workers = atoi(argv[4]);
    limit_self(atol(argv[2]));
    for (int i = 0; i < MAX_MANAGERS; i++) {
        pthread_rwlock_init(&slots[i].life, NULL);
        pthread_mutex_init(&slots[i].serial, NULL);
    }

    void *lib = dlopen(argv[6], RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        send_error(0, KMI_OP_HELLO, KM_ERR_INVALID_ARGUMENT, "cannot be loaded: %s", dlerror());
        return 1;
    }
    const km_plugin *(*init)(const km_host *) = (const km_plugin *(*)(const km_host *))dlsym(lib, "km_plugin_init");
    if (init == NULL) {
        send_error(0, KMI_OP_HELLO, KM_ERR_INVALID_ARGUMENT,
                   "not a key-manager plugin: it does not export km_plugin_init");
        return 1;
    }
    host.struct_size = sizeof host;
    host.abi_major = KM_ABI_VERSION_MAJOR;
    host.abi_minor = KM_ABI_VERSION_MINOR;
    host.log = host_log;
    host.log_level = atoi(argv[5]);
    char why[512];
    const char *bad = check_plugin(plugin = init(&host), why, sizeof why);
    if (bad != NULL) {
        send_error(0, KMI_OP_HELLO, KM_ERR_INVALID_ARGUMENT, "%s", bad);
        return 1;
    }
    /* Seccomp-lite, the cheap part: not dumpable, so no other process of
     * this user can ptrace us or read /proc/PID/mem (unwrapped keys pass
     * through here). Set after km_plugin_init: a plugin may still start
     * helpers or read /proc/self while loading. A syscall filter is not
     * applied: Python, Go and the SDKs need too many calls to list. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    hello();
    pthread_t watch;
    watcher_kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (workers > 1 && pthread_create(&watch, NULL, watcher, NULL) != 0)
        hand_over_now = 1;
    for (int i = 1; i < workers; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, NULL) != 0)
            break; /* fewer workers still serve */
    }
    worker(NULL);
}
