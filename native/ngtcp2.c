/*
 * ngtcp2.node: a server-side QUIC engine on the system's ngtcp2 (0.12 API, Debian bookworm) and
 * GnuTLS, offering the subset of quiche's napi `Connection` that src/quic/ drives (issue 15,
 * docs/quic-performance.md "The ngtcp2 engine"). The relay's connection code (src/quic/connection.ts)
 * runs on it unchanged: same method names, same return values, same error messages
 * (`StreamReset(code)`, `StreamStopped(code)`, `StreamLimit`, `InvalidStreamState(id)`, `Done`).
 *
 * What differs from quiche inside, and how it is bridged:
 * - ngtcp2 references sent stream data until it is acknowledged: each stream keeps its bytes in a
 *   list of chunks, freed by acked_stream_data_offset (contiguous, in order).
 * - received stream data arrives by callback: each stream buffers it for the pull-style
 *   streamRecv, and the flow-control windows (stream and connection) grow as the app reads.
 * - quiche parses the client's first Initial in recv(); ngtcp2 needs its header to create the
 *   connection, so accept() only records the IDs and addresses, and the first recv() creates it.
 * - closing and draining periods are the application's in ngtcp2: kept here (3 × PTO).
 * - packets are built with ngtcp2_conn_writev_stream, several streams per packet
 *   (NGTCP2_WRITE_STREAM_FLAG_MORE), streams taken by quiche-style urgency (lower first; within a
 *   level round robin when incremental).
 * - keep-alive is ngtcp2's own (ngtcp2_conn_set_keep_alive_timeout): sendAckEliciting is a no-op.
 * - the server issues extra connection IDs (NEW_CONNECTION_ID); they are drawn up front at accept
 *   with the same prefix (worker index) and length as the first, so the JS side can route them
 *   (extraScids()).
 *
 * Safety: every length from JS is checked against its buffer, every length from the network is
 * ngtcp2's to parse (we only copy what its callbacks hand us, bounded by flow control); no mutable
 * globals: the constructors live in per-environment instance data (the addon is loaded by several
 * worker threads).
 *
 * Two library APIs: 0.12 (Debian bookworm) and 1.x (Debian trixie, Fedora, Alpine). 1.x renamed
 * the connection-close error (ngtcp2_ccerr), the connection info, the token fields, gave the
 * stream shutdown calls a flags argument, and wants the server to set original_dcid_present; it
 * also fixed the two 0.12 bugs this file works around (a peer's uni stream never closed, the ACK
 * gap abort). The differences are the MOQ_NGTCP2_1X guards below; everything else is one code path.
 * The build (native/build-ngtcp2.mjs) accepts 0.12.x and 1.x and refuses the 0.13–0.19 APIs in
 * between, which were never tested. Tested: 0.12.1 (Debian's packages) and 1.11.0 (trixie's
 * version, built from its release tag), the same suites on each (docs/quic-performance.md).
 *
 * Build: node native/build.mjs (the package's install script) when pkg-config finds libngtcp2,
 * libngtcp2_crypto_gnutls and gnutls.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <malloc.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

/* The archive's debug printers (ngtcp2_map_print_distance, ngtcp2_ksl_print) write to stderr, which
 * a shared object cannot reach from Debian's non-PIC libngtcp2.a: the build renames it to this. */
__attribute__((visibility("hidden"))) FILE *moq_ngtcp2_stderr;

#if !defined(NGTCP2_VERSION_NUM) || (NGTCP2_VERSION_NUM >= 0x000d00 && NGTCP2_VERSION_NUM < 0x010000)
#error "native/ngtcp2.c is written for the ngtcp2 0.12 and 1.x APIs (see the header comment)"
#endif
#if NGTCP2_VERSION_NUM >= 0x010000
#define MOQ_NGTCP2_1X 1
typedef ngtcp2_ccerr moq_ccerr;
#define moq_ccerr_default ngtcp2_ccerr_default
#define moq_ccerr_set_tls_alert ngtcp2_ccerr_set_tls_alert
#define moq_ccerr_set_liberr ngtcp2_ccerr_set_liberr
#define moq_ccerr_set_application_error ngtcp2_ccerr_set_application_error
#define moq_ccerr_set_transport_error ngtcp2_ccerr_set_transport_error
#define MOQ_CCERR_TYPE_APPLICATION NGTCP2_CCERR_TYPE_APPLICATION
#define moq_conn_get_ccerr(conn, out) (*(out) = *ngtcp2_conn_get_ccerr(conn))
#define moq_shutdown_stream(conn, id, code) ngtcp2_conn_shutdown_stream((conn), 0, (id), (code))
#define moq_shutdown_stream_read(conn, id, code) ngtcp2_conn_shutdown_stream_read((conn), 0, (id), (code))
#define moq_shutdown_stream_write(conn, id, code) ngtcp2_conn_shutdown_stream_write((conn), 0, (id), (code))
typedef ngtcp2_conn_info moq_conn_info;
#define moq_conn_get_info ngtcp2_conn_get_conn_info
#else
#define MOQ_NGTCP2_1X 0
typedef ngtcp2_connection_close_error moq_ccerr;
#define moq_ccerr_default ngtcp2_connection_close_error_default
#define moq_ccerr_set_tls_alert ngtcp2_connection_close_error_set_transport_error_tls_alert
#define moq_ccerr_set_liberr ngtcp2_connection_close_error_set_transport_error_liberr
#define moq_ccerr_set_application_error ngtcp2_connection_close_error_set_application_error
#define moq_ccerr_set_transport_error ngtcp2_connection_close_error_set_transport_error
#define MOQ_CCERR_TYPE_APPLICATION NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION
#define moq_conn_get_ccerr ngtcp2_conn_get_connection_close_error
#define moq_shutdown_stream ngtcp2_conn_shutdown_stream
#define moq_shutdown_stream_read ngtcp2_conn_shutdown_stream_read
#define moq_shutdown_stream_write ngtcp2_conn_shutdown_stream_write
typedef ngtcp2_conn_stat moq_conn_info;
#define moq_conn_get_info ngtcp2_conn_get_conn_stat
#endif

#if !MOQ_NGTCP2_1X
/*
 * libngtcp2 internals (lib/ngtcp2_conn.h of 0.12.1), reachable only because the engine links
 * Debian's static libngtcp2.a: 0.12 never closes a peer's unidirectional stream (its close test
 * wants our send side's FIN acknowledged, a flag such a stream never gets; upstream 1d591bde,
 * released in 0.14.0, sets it when the stream is created). The engine closes it itself once the
 * app has read its FIN or reset, which is what 0.14 does at the same point. 1.x closes it itself.
 */
typedef struct ngtcp2_strm ngtcp2_strm;
ngtcp2_strm *ngtcp2_conn_find_stream(ngtcp2_conn *conn, int64_t stream_id);
int ngtcp2_conn_close_stream(ngtcp2_conn *conn, ngtcp2_strm *strm);
#endif

/* Bumped whenever the JS-facing contract changes; the loader refuses a stale build. */
#define ABI_VERSION 2
/* Largest UDP payload we send (quiche's default, and our transport parameter). */
#define MAX_UDP_PAYLOAD 1350
/* Urgency levels 0..7 (quiche's range as the relay uses it) and one more for "never set" (quiche 127). */
#define LEVELS 9
#define DEFAULT_URGENCY 8
/* Extra connection IDs drawn at accept (ngtcp2 issues at most NGTCP2_MAX_SCID_POOL_SIZE - 1 = 7). */
#define EXTRA_CIDS 7
/* Vectors per writev_stream call. */
#define MAX_VECS 16
/* ALPNs a Config takes; GnuTLS takes at most 8 per session (the client hello hook picks them). */
#define MAX_ALPNS 32
#define GNUTLS_MAX_ALPNS 8
/* Close reasons kept (ours and the peer's); ngtcp2 truncates received ones to 1024. */
#define MAX_REASON 1024
/* GnuTLS: TLS 1.3 only, and no middlebox-compatibility mode (QUIC forbids it). */
static const char PRIORITY[] = "%DISABLE_TLS13_COMPAT_MODE:NORMAL:-VERS-ALL:+VERS-TLS1.3";

static const napi_type_tag CONFIG_TAG = {0x6d6f7166616e6f75ULL, 0x6e67746370326366ULL};
static const napi_type_tag CONN_TAG = {0x6d6f7166616e6f75ULL, 0x6e67746370326363ULL};

/* The length of the connection IDs the server issues (src/quic/cid.ts CID_LEN). */
#define FAST_CID_LEN 16

/*
 * Connections by small integer (writeShared names its targets this way: one typed array instead of
 * an object and an unwrap per viewer). Shared by the instance and every connection it made, and
 * freed by the last of them: a connection may be finalized after its environment's instance data.
 */
typedef struct {
	uint8_t cid[FAST_CID_LEN];
	struct qconn *q; /* NULL: empty; CID_GONE: deleted */
} cid_entry_t;

typedef struct {
	size_t refs;
	struct qconn **conns;
	uint32_t cap, next_free; /* free slots are chained through conns[i] == NULL and `free_next` */
	uint32_t *free_next;
	/*
	 * Our connection IDs (those of FAST_CID_LEN bytes, what server.ts issues) → connection, for
	 * recvMany: open addressing, linear probing, at most half full counting deleted entries.
	 */
	cid_entry_t *cids;
	size_t cid_cap, cid_used, cid_gone;
} slot_table_t;

typedef struct {
	napi_ref config_ctor;
	napi_ref conn_ctor;
	slot_table_t *slots;
} instance_t;

static uint64_t now_ns(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* ---- config ----------------------------------------------------------------------------------- */

typedef struct {
	int refs; /* the JS object (1 while alive) + each connection built on it */
	gnutls_certificate_credentials_t cred;
	gnutls_priority_t priority;
	gnutls_datum_t alpns[MAX_ALPNS];
	uint8_t alpn_bytes[MAX_ALPNS][256];
	unsigned n_alpns;
	uint64_t idle_timeout_ms, keep_alive_ms, handshake_timeout_ms;
	uint64_t max_data, max_stream_data, max_streams_bidi, max_streams_uni;
	uint64_t max_window, max_stream_window;
} config_t;

static void config_unref(config_t *c) {
	if (--c->refs > 0) return;
	if (c->priority) gnutls_priority_deinit(c->priority);
	if (c->cred) gnutls_certificate_free_credentials(c->cred);
	free(c);
}

/* ---- streams ---------------------------------------------------------------------------------- */

/*
 * One buffer written to many streams (writeShared: a frame for every viewer): copied once, kept
 * until the last stream's chunk referring to it is acknowledged.
 */
typedef struct {
	size_t refs;
	size_t len;
	uint8_t data[];
} shared_buf_t;

typedef struct chunk {
	struct chunk *next;
	uint64_t off; /* stream offset of base[0] */
	size_t len, cap;
	/* base: data[] of this chunk, or a shared buffer's bytes (then cap == len: nothing is appended). */
	uint8_t *base;
	shared_buf_t *shared;
	uint8_t data[];
} chunk_t;

/*
 * Send-buffer accounting, per thread (a connection lives on the thread that accepted it): bytes the
 * app's writes copied into the engine, and bytes of stream data the engine holds until acknowledged.
 * sendBufferStats() reports them (metrics, and the fan-out writes' one copy per frame).
 */
static __thread double send_copied, send_held;

static void chunk_free(chunk_t *c) {
	if (c->shared) {
		if (--c->shared->refs == 0) {
			send_held -= (double)c->shared->len;
			free(c->shared);
		}
	} else {
		send_held -= (double)c->cap;
	}
	free(c);
}

typedef struct stream {
	int64_t id;
	uint8_t urgency;
	bool incremental;
	/* send side */
	chunk_t *head, *tail;
	uint64_t written; /* bytes the app handed us */
	uint64_t sent;    /* bytes handed to ngtcp2 */
	uint64_t acked;   /* contiguous bytes acknowledged (freed) */
	bool fin_queued, fin_sent, write_shut;
	bool stopped, stop_seen;
	uint64_t stop_code;
	/* receive side */
	uint8_t *rbuf;
	size_t rhead, rlen, rcap; /* unread bytes: rbuf[rhead .. rhead + rlen) */
	bool rfin, reset, recv_done, has_recv;
	uint64_t reset_code;
	/* ngtcp2 is done with it (stream_close) */
	bool ng_closed;
	/* scheduling */
	bool credited; /* the peer's stream limit was extended for it */
	bool in_sched;
	uint64_t skip_epoch;
	struct stream *prev, *next;
} stream_t;

/* Open addressing (linear probing, backward-shift deletion) from stream id to stream. */
typedef struct {
	stream_t **slots;
	size_t cap, count;
} table_t;

static size_t hash_id(int64_t id, size_t cap) {
	uint64_t x = (uint64_t)id * 0x9e3779b97f4a7c15ULL;
	return (size_t)(x >> 32) & (cap - 1);
}

static stream_t *table_get(const table_t *t, int64_t id) {
	if (t->cap == 0) return NULL;
	for (size_t i = hash_id(id, t->cap);; i = (i + 1) & (t->cap - 1)) {
		stream_t *s = t->slots[i];
		if (s == NULL) return NULL;
		if (s->id == id) return s;
	}
}

static bool table_put(table_t *t, stream_t *s) {
	if ((t->count + 1) * 2 > t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		stream_t **slots = calloc(cap, sizeof *slots);
		if (slots == NULL) return false;
		for (size_t j = 0; j < t->cap; j++) {
			stream_t *o = t->slots[j];
			if (o == NULL) continue;
			size_t i = hash_id(o->id, cap);
			while (slots[i] != NULL) i = (i + 1) & (cap - 1);
			slots[i] = o;
		}
		free(t->slots);
		t->slots = slots;
		t->cap = cap;
	}
	size_t i = hash_id(s->id, t->cap);
	while (t->slots[i] != NULL) i = (i + 1) & (t->cap - 1);
	t->slots[i] = s;
	t->count++;
	return true;
}

static void table_del(table_t *t, int64_t id) {
	if (t->cap == 0) return;
	size_t mask = t->cap - 1, i = hash_id(id, t->cap);
	while (t->slots[i] != NULL && t->slots[i]->id != id) i = (i + 1) & mask;
	if (t->slots[i] == NULL) return;
	t->slots[i] = NULL;
	t->count--;
	for (size_t j = (i + 1) & mask; t->slots[j] != NULL; j = (j + 1) & mask) {
		size_t home = hash_id(t->slots[j]->id, t->cap);
		/* move j back into the hole at i when its home is not in (i, j] (cyclically) */
		bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
		if (!between) {
			t->slots[i] = t->slots[j];
			t->slots[j] = NULL;
			i = j;
		}
	}
}

/* ---- connection ------------------------------------------------------------------------------- */

/*
 * ST_REJECTED: the client's first packet did not make a connection (undecryptable, invalid): nothing
 * is sent and the state is dropped. Unlike ST_CLOSED it is not "draining", as with quiche: the JS
 * side then finds no packet to send and counts the datagram as garbage (connection.ts flush).
 */
enum { ST_NEW, ST_OPEN, ST_CLOSE_PENDING, ST_CLOSING, ST_DRAINING, ST_CLOSED, ST_REJECTED };

typedef struct {
	bool set, app;
	uint64_t code;
	uint8_t reason[MAX_REASON];
	size_t reason_len;
} close_info_t;

typedef struct qconn {
	ngtcp2_conn *conn;
	gnutls_session_t tls;
	ngtcp2_crypto_conn_ref ref;
	config_t *cfg;
	/* gnutls_alpn_set_protocols was called on `tls` (at most once: see client_hello_hook). */
	bool alpn_set;
	uint8_t scid[NGTCP2_MAX_CIDLEN], odcid[NGTCP2_MAX_CIDLEN];
	size_t scid_len, odcid_len;
	bool has_odcid;
	uint8_t extra[EXTRA_CIDS][NGTCP2_MAX_CIDLEN];
	size_t n_extra_used;
	struct sockaddr_storage local, remote;
	socklen_t local_len, remote_len;
	char remote_host[64];
	uint32_t remote_port;
	int state;
	bool timed_out, resend_close;
	uint64_t close_deadline;
	close_info_t local_err, peer_err;
	moq_ccerr ccerr;
	uint8_t close_pkt[MAX_UDP_PAYLOAD];
	size_t close_pkt_len;
	table_t streams;
	stream_t *sched_head[LEVELS], *sched_tail[LEVELS];
	uint64_t unsent_total;
	uint64_t epoch;
	uint64_t pkts_sent, bytes_sent, pkts_recv, bytes_recv;
	/* Peer uni streams to close in ngtcp2 once ngtcp2_conn_read_pkt returns (release_peer_uni). */
	int64_t *release;
	size_t n_release, release_cap;
	/* ngtcp2's own allocations for this connection, counted (stats().engineHeapBytes). */
	ngtcp2_mem mem;
	size_t engine_heap;
	/*
	 * `shared`: the `state` Float64Array of the JS object (STATE_*): what connection.ts would otherwise ask
	 * with one call each after every packet (timeout, established/draining/closed, whether any
	 * stream changed). Written at the end of recv, send, sendBatch, onTimeout and close. It is a
	 * read-only property of the object, so its memory lives as long as the object that owns `q`.
	 */
	double *shared;
	/* Stream events (data, FIN, reset, STOP_SENDING, open, close) seen so far: STATE_EVENTS. */
	double events;
	/*
	 * The ACK guard (ack_guard_drops): our last 1-RTT packet number; the largest packet number our
	 * latest ACK named (ngtcp2's largest received), the first of our packets that named it, and
	 * whether a peer's ACK may have acknowledged that packet.
	 */
	int64_t tx_last_pn, named_largest, named_by_pn;
	bool named_valid, named_acked;
	/* Where writeShared finds it (slot_table_t), until it is finalized. */
	slot_table_t *slots;
	uint32_t slot;
	/* recvMany may read its short-header packets (the app has seen the handshake complete). */
	bool fast_recv;
} qconn_t;

/* STATE_SLOT: the connection's index for writeShared (constant for its life). */
enum { STATE_TIMEOUT, STATE_FLAGS, STATE_EVENTS, STATE_SLOT, STATE_SLOTS };
enum { FLAG_ESTABLISHED = 1, FLAG_DRAINING = 2, FLAG_CLOSED = 4, FLAG_TIMED_OUT = 8 };

/* Counting allocator: ngtcp2's heap per connection is observable, so a test can show that a
 * connection carrying thousands of streams does not keep them (malloc_usable_size: glibc). */
static void *counted_malloc(size_t size, void *user) {
	void *p = malloc(size);
	if (p != NULL) ((qconn_t *)user)->engine_heap += malloc_usable_size(p);
	return p;
}

static void counted_free(void *ptr, void *user) {
	if (ptr == NULL) return;
	((qconn_t *)user)->engine_heap -= malloc_usable_size(ptr);
	free(ptr);
}

static void *counted_calloc(size_t n, size_t size, void *user) {
	void *p = calloc(n, size);
	if (p != NULL) ((qconn_t *)user)->engine_heap += malloc_usable_size(p);
	return p;
}

static void *counted_realloc(void *ptr, size_t size, void *user) {
	size_t before = ptr != NULL ? malloc_usable_size(ptr) : 0;
	void *p = realloc(ptr, size);
	if (p == NULL) return NULL;
	((qconn_t *)user)->engine_heap += malloc_usable_size(p) - before;
	return p;
}

static stream_t *stream_new(qconn_t *q, int64_t id) {
	stream_t *s = calloc(1, sizeof *s);
	if (s == NULL) return NULL;
	s->id = id;
	s->urgency = DEFAULT_URGENCY;
	s->incremental = true;
	/* A stream we opened for sending only (our uni) has no receive side. */
	bool local = ngtcp2_conn_is_local_stream(q->conn, id);
	s->has_recv = !(local && !ngtcp2_is_bidi_stream(id));
	if (!table_put(&q->streams, s)) {
		free(s);
		return NULL;
	}
	ngtcp2_conn_set_stream_user_data(q->conn, id, s);
	return s;
}

static void sched_remove(qconn_t *q, stream_t *s) {
	if (!s->in_sched) return;
	int l = s->urgency;
	if (s->prev) s->prev->next = s->next;
	else q->sched_head[l] = s->next;
	if (s->next) s->next->prev = s->prev;
	else q->sched_tail[l] = s->prev;
	s->prev = s->next = NULL;
	s->in_sched = false;
}

static void sched_add(qconn_t *q, stream_t *s) {
	if (s->in_sched) return;
	int l = s->urgency;
	s->prev = q->sched_tail[l];
	s->next = NULL;
	if (q->sched_tail[l]) q->sched_tail[l]->next = s;
	else q->sched_head[l] = s;
	q->sched_tail[l] = s;
	s->in_sched = true;
}

static bool stream_pending(const stream_t *s) {
	return !s->write_shut && !s->stopped && !s->ng_closed &&
	       (s->written > s->sent || (s->fin_queued && !s->fin_sent));
}

static void free_chunks(qconn_t *q, stream_t *s) {
	chunk_t *c = s->head;
	while (c) {
		chunk_t *n = c->next;
		chunk_free(c);
		c = n;
	}
	s->head = s->tail = NULL;
	q->unsent_total -= s->written - s->sent;
	s->sent = s->written;
}

static void stream_free(qconn_t *q, stream_t *s) {
	sched_remove(q, s);
	free_chunks(q, s);
	free(s->rbuf);
	table_del(&q->streams, s->id);
	if (q->conn && !s->ng_closed) ngtcp2_conn_set_stream_user_data(q->conn, s->id, NULL);
	free(s);
}

/* Whether the app still has something to learn from the stream (data, FIN, reset, stop). */
static bool stream_js_pending(const stream_t *s) {
	return (s->has_recv && !s->recv_done) || (s->stopped && !s->stop_seen);
}

/*
 * A peer's stream stops counting against its limit once the app is done with it (quiche grants
 * credit as it collects streams). ngtcp2 0.12 does not close a peer's unidirectional stream after
 * its FIN (only bidirectional ones), so for those the app's end of reading is the end.
 */
static void credit_peer_stream(qconn_t *q, stream_t *s) {
	if (s->credited || q->conn == NULL || ngtcp2_conn_is_local_stream(q->conn, s->id)) return;
	s->credited = true;
	if (ngtcp2_is_bidi_stream(s->id)) ngtcp2_conn_extend_max_streams_bidi(q->conn, 1);
	else ngtcp2_conn_extend_max_streams_uni(q->conn, 1);
}

/* The connection whose packet this thread is reading (decrypt_cb has no user data of its own). */
static __thread qconn_t *reading_conn;

/*
 * Frees ngtcp2's state of a peer's uni stream whose FIN or RESET_STREAM ngtcp2 has delivered (so
 * nothing of it is still counted against flow control). Never inside ngtcp2_conn_read_pkt: the
 * frame handlers use the stream after their callbacks return.
 */
static void release_peer_uni(qconn_t *q, int64_t id) {
#if MOQ_NGTCP2_1X
	/* 1.x closes the stream itself once its FIN or reset is in (stream_close_cb). */
	(void)q;
	(void)id;
#else
	if (q->conn == NULL || reading_conn != NULL) return;
	ngtcp2_strm *strm = ngtcp2_conn_find_stream(q->conn, id);
	if (strm != NULL) ngtcp2_conn_close_stream(q->conn, strm); /* stream_close_cb: user data is NULL */
#endif
}

#if !MOQ_NGTCP2_1X
/* Inside ngtcp2_conn_read_pkt: remembers the stream for release_pending. */
static bool queue_release(qconn_t *q, int64_t id) {
	if (q->n_release == q->release_cap) {
		size_t cap = q->release_cap ? q->release_cap * 2 : 16;
		int64_t *r = realloc(q->release, cap * sizeof *r);
		if (r == NULL) return false;
		q->release = r;
		q->release_cap = cap;
	}
	q->release[q->n_release++] = id;
	return true;
}
#endif

static void release_pending(qconn_t *q) {
	for (size_t i = 0; i < q->n_release; i++) release_peer_uni(q, q->release[i]);
	q->n_release = 0;
}

static void stream_maybe_free(qconn_t *q, stream_t *s) {
	bool peer_uni = q->conn && !ngtcp2_is_bidi_stream(s->id) && !ngtcp2_conn_is_local_stream(q->conn, s->id);
	if (peer_uni && s->recv_done) credit_peer_stream(q, s);
	if ((s->ng_closed || peer_uni) && !stream_js_pending(s)) {
		bool release = peer_uni && !s->ng_closed && (s->rfin || s->reset);
		int64_t id = s->id;
		stream_free(q, s);
		if (release) release_peer_uni(q, id);
	}
}

/* Discards unread bytes, giving their connection-level credit back. */
static void drop_recv(qconn_t *q, stream_t *s) {
	if (s->rlen > 0 && q->conn) ngtcp2_conn_extend_max_offset(q->conn, s->rlen);
	free(s->rbuf);
	s->rbuf = NULL;
	s->rhead = s->rlen = s->rcap = 0;
}

static void set_local_error_liberr(qconn_t *q, int liberr) {
	if (q->local_err.set) return;
	moq_ccerr_default(&q->ccerr);
	if (liberr == NGTCP2_ERR_CRYPTO)
		moq_ccerr_set_tls_alert(&q->ccerr, ngtcp2_conn_get_tls_alert(q->conn), NULL, 0);
	else
		moq_ccerr_set_liberr(&q->ccerr, liberr, NULL, 0);
	q->local_err.set = true;
	q->local_err.app = false;
	q->local_err.code = q->ccerr.error_code;
	const char *msg = ngtcp2_strerror(liberr);
	size_t n = strlen(msg);
	if (n > MAX_REASON) n = MAX_REASON;
	memcpy(q->local_err.reason, msg, n);
	q->local_err.reason_len = n;
	q->state = ST_CLOSE_PENDING;
}

/* ---- ngtcp2 callbacks ------------------------------------------------------------------------- */

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref) { return ((qconn_t *)ref->user_data)->conn; }

static void rand_cb(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx) {
	(void)ctx;
	gnutls_rnd(GNUTLS_RND_RANDOM, dest, len);
}

static int new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t len, void *user) {
	(void)conn;
	qconn_t *q = user;
	if (len > NGTCP2_MAX_CIDLEN) return NGTCP2_ERR_CALLBACK_FAILURE;
	if (q->n_extra_used < EXTRA_CIDS && len == q->scid_len) {
		ngtcp2_cid_init(cid, q->extra[q->n_extra_used++], len);
	} else {
		/* Beyond the pool (replacements for retired IDs): valid but not routed to us by the JS side. */
		uint8_t data[NGTCP2_MAX_CIDLEN];
		gnutls_rnd(GNUTLS_RND_RANDOM, data, len);
		if (len > 0 && q->scid_len > 0) data[0] = q->scid[0];
		ngtcp2_cid_init(cid, data, len);
	}
	gnutls_rnd(GNUTLS_RND_RANDOM, token, NGTCP2_STATELESS_RESET_TOKENLEN);
	return 0;
}

static stream_t *stream_of(qconn_t *q, int64_t id, void *sud) {
	if (sud) return sud;
	stream_t *s = table_get(&q->streams, id);
	return s ? s : stream_new(q, id);
}

static int stream_open_cb(ngtcp2_conn *conn, int64_t id, void *user) {
	(void)conn;
	qconn_t *q = user;
	q->events++;
	if (table_get(&q->streams, id) == NULL && stream_new(q, id) == NULL) return NGTCP2_ERR_CALLBACK_FAILURE;
	return 0;
}

static int recv_stream_data_cb(ngtcp2_conn *conn, uint32_t flags, int64_t id, uint64_t offset, const uint8_t *data,
                               size_t len, void *user, void *sud) {
	(void)offset;
	qconn_t *q = user;
	q->events++;
	stream_t *s = stream_of(q, id, sud);
	if (s == NULL) return NGTCP2_ERR_CALLBACK_FAILURE;
	if (s->recv_done || s->reset || !s->has_recv) {
		/* Nobody will read it (stopped by us): give the credit straight back. */
		ngtcp2_conn_extend_max_stream_offset(conn, id, len);
		ngtcp2_conn_extend_max_offset(conn, len);
	} else if (len > 0) {
		/* Bounded by flow control: we only extend the window as the app reads. */
		if (s->rhead + s->rlen + len > s->rcap) {
			if (s->rhead > 0) {
				memmove(s->rbuf, s->rbuf + s->rhead, s->rlen);
				s->rhead = 0;
			}
			if (s->rlen + len > s->rcap) {
				size_t cap = s->rcap ? s->rcap : 4096;
				while (cap < s->rlen + len) cap *= 2;
				uint8_t *b = realloc(s->rbuf, cap);
				if (b == NULL) return NGTCP2_ERR_CALLBACK_FAILURE;
				s->rbuf = b;
				s->rcap = cap;
			}
		}
		memcpy(s->rbuf + s->rhead + s->rlen, data, len);
		s->rlen += len;
	}
	if (flags & NGTCP2_STREAM_DATA_FLAG_FIN) s->rfin = true;
	return 0;
}

static int acked_cb(ngtcp2_conn *conn, int64_t id, uint64_t offset, uint64_t len, void *user, void *sud) {
	(void)conn;
	(void)id;
	(void)user;
	stream_t *s = sud;
	if (s == NULL) return 0;
	uint64_t end = offset + len;
	if (end > s->acked) s->acked = end;
	while (s->head && s->head->off + s->head->len <= s->acked && s->head->off + s->head->len <= s->sent) {
		chunk_t *c = s->head;
		s->head = c->next;
		if (s->tail == c) s->tail = NULL;
		chunk_free(c);
	}
	return 0;
}

static void peer_stopped(qconn_t *q, stream_t *s, bool has_code, uint64_t code);

static int stream_close_cb(ngtcp2_conn *conn, uint32_t flags, int64_t id, uint64_t code, void *user, void *sud) {
	qconn_t *q = user;
	q->events++;
	stream_t *s = sud;
	if (s == NULL) {
		/* Ours was freed already (credited then), or never made: the peer may open another. */
		if (!ngtcp2_conn_is_local_stream(conn, id) && ngtcp2_is_bidi_stream(id)) ngtcp2_conn_extend_max_streams_bidi(conn, 1);
		return 0;
	}
	bool send_side = ngtcp2_is_bidi_stream(id) || ngtcp2_conn_is_local_stream(conn, id);
	if (send_side && !s->write_shut && !(s->fin_sent && s->acked == s->written))
		peer_stopped(q, s, flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET, code);
	s->ng_closed = true;
	/* A peer's uni stream is credited when the app is done reading it (stream_maybe_free): 1.x
	 * closes it as soon as its FIN is in, before the app has read what is buffered here. */
	if (send_side) credit_peer_stream(q, s);
	sched_remove(q, s);
	free_chunks(q, s);
	stream_maybe_free(q, s);
	return 0;
}

static int stream_reset_cb(ngtcp2_conn *conn, int64_t id, uint64_t final_size, uint64_t code, void *user, void *sud) {
	(void)final_size;
	qconn_t *q = user;
	q->events++;
	if (sud == NULL && table_get(&q->streams, id) == NULL) {
#if MOQ_NGTCP2_1X
		/* A stream the app is done with (1.x opens a stream before resetting it, so ours exists
		 * otherwise): ngtcp2 closes it once this packet is read. */
		(void)conn;
		return 0;
#else
		if (!ngtcp2_is_bidi_stream(id) && !ngtcp2_conn_is_local_stream(conn, id) &&
		    ngtcp2_conn_find_stream(conn, id) != NULL) {
			/* A peer uni stream the app is done with (it stopped it; this is the peer's answer):
			 * nothing to tell the app, ngtcp2's state goes once this packet is read. */
			return queue_release(q, id) ? 0 : NGTCP2_ERR_CALLBACK_FAILURE;
		}
		/* Reset before any of its data: 0.12 made no ngtcp2_strm and gave the peer its stream back
		 * itself (conn_recv_reset_stream), so the app's end of it must not credit it again. */
		stream_t *fresh = stream_new(q, id);
		if (fresh == NULL) return NGTCP2_ERR_CALLBACK_FAILURE;
		fresh->credited = true;
		sud = fresh;
#endif
	}
	stream_t *s = stream_of(q, id, sud);
	if (s == NULL) return NGTCP2_ERR_CALLBACK_FAILURE;
	if (!s->reset && !s->recv_done) {
		s->reset = true;
		s->reset_code = code;
		drop_recv(q, s);
	}
	return 0;
}

/*
 * A peer's STOP_SENDING: ngtcp2 0.12 answers it itself (RESET_STREAM with the same code) and has no
 * callback for it (its stream_stop_sending is about our own STOP_SENDING). We read it from the
 * decrypted 1-RTT payload (scan_frames, called by decrypt_cb), with its code, as it arrives. As
 * fallbacks: ngtcp2 refusing the stream's data (NGTCP2_ERR_STREAM_SHUT_WR, code unknown: 0), or
 * closing the stream with its send side unfinished (the code then comes with stream_close).
 */
static void peer_stopped(qconn_t *q, stream_t *s, bool has_code, uint64_t code) {
	if (s->write_shut) return;
	if (!s->stopped) {
		s->stopped = true;
		s->stop_code = has_code ? code : 0;
	} else if (has_code && !s->stop_seen) {
		s->stop_code = code;
	}
	sched_remove(q, s);
}

/* A QUIC variable-length integer at *p, not past end; false when truncated. */
static bool rd_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
	if (*p >= end) return false;
	size_t n = (size_t)1 << (**p >> 6);
	if ((size_t)(end - *p) < n) return false;
	uint64_t x = **p & 0x3f;
	for (size_t i = 1; i < n; i++) x = (x << 8) | (*p)[i];
	*p += n;
	*v = x;
	return true;
}

static bool skip_bytes(const uint8_t **p, const uint8_t *end, uint64_t n) {
	if ((uint64_t)(end - *p) < n) return false;
	*p += n;
	return true;
}

/*
 * Walks the frames of a decrypted 1-RTT payload for STOP_SENDING (RFC 9000 §19; the frames ngtcp2
 * 0.12 accepts). Read only, every length bounded by the payload; it stops at the first frame it
 * cannot walk (ngtcp2 then rejects the packet itself), so at worst a STOP_SENDING is learned later
 * by the fallbacks above. Only streams this connection knows with a send side are touched, and
 * only when `apply` (else it only notes the ACKs for the ACK guard, ack_guard_drops).
 */
static void scan_frames(qconn_t *q, const uint8_t *p, size_t len, bool apply) {
	const uint8_t *end = p + len;
	uint64_t a, b, n;
	while (p < end) {
		uint8_t type = *p++;
		switch (type) {
		case 0x00: /* PADDING */
			while (p < end && *p == 0) p++;
			break;
		case 0x01: /* PING */
		case 0x1e: /* HANDSHAKE_DONE */
			break;
		case 0x02: /* ACK */
		case 0x03: /* ACK_ECN */
			if (!rd_varint(&p, end, &b) || !rd_varint(&p, end, &a) || !rd_varint(&p, end, &n) || !rd_varint(&p, end, &a))
				return;
			/* It may acknowledge the first of our packets whose ACK named ngtcp2's largest (ACK guard). */
			if (q->named_valid && b >= (uint64_t)q->named_by_pn) q->named_acked = true;
			if (n > (uint64_t)(end - p)) return; /* each range takes at least 2 bytes */
			for (uint64_t i = 0; i < n; i++) {
				if (!rd_varint(&p, end, &a) || !rd_varint(&p, end, &a)) return;
			}
			if (type == 0x03 && (!rd_varint(&p, end, &a) || !rd_varint(&p, end, &a) || !rd_varint(&p, end, &a))) return;
			break;
		case 0x04: /* RESET_STREAM */
			if (!rd_varint(&p, end, &a) || !rd_varint(&p, end, &a) || !rd_varint(&p, end, &a)) return;
			break;
		case 0x05: { /* STOP_SENDING */
			if (!rd_varint(&p, end, &a) || !rd_varint(&p, end, &b)) return;
			if (a > (uint64_t)INT64_MAX) return;
			int64_t id = (int64_t)a;
			stream_t *s = table_get(&q->streams, id);
			bool send_side = ngtcp2_is_bidi_stream(id) || ngtcp2_conn_is_local_stream(q->conn, id);
			/* Nothing to stop when all was sent and acknowledged (ngtcp2 ignores it then too). */
			if (apply && s && send_side && !(s->fin_sent && s->acked == s->written)) {
				peer_stopped(q, s, true, b);
				q->events++;
			}
			break;
		}
		case 0x06: /* CRYPTO */
			if (!rd_varint(&p, end, &a) || !rd_varint(&p, end, &n) || !skip_bytes(&p, end, n)) return;
			break;
		case 0x07: /* NEW_TOKEN */
			if (!rd_varint(&p, end, &n) || !skip_bytes(&p, end, n)) return;
			break;
		case 0x08: case 0x09: case 0x0a: case 0x0b: case 0x0c: case 0x0d: case 0x0e: case 0x0f: /* STREAM */
			if (!rd_varint(&p, end, &a)) return;
			if ((type & 0x04) && !rd_varint(&p, end, &a)) return;
			if (!(type & 0x02)) return; /* no length: the data runs to the end of the packet */
			if (!rd_varint(&p, end, &n) || !skip_bytes(&p, end, n)) return;
			break;
		case 0x10: /* MAX_DATA */
		case 0x12: case 0x13: /* MAX_STREAMS */
		case 0x14: /* DATA_BLOCKED */
		case 0x16: case 0x17: /* STREAMS_BLOCKED */
		case 0x19: /* RETIRE_CONNECTION_ID */
			if (!rd_varint(&p, end, &a)) return;
			break;
		case 0x11: /* MAX_STREAM_DATA */
		case 0x15: /* STREAM_DATA_BLOCKED */
			if (!rd_varint(&p, end, &a) || !rd_varint(&p, end, &a)) return;
			break;
		case 0x18: /* NEW_CONNECTION_ID */
			if (!rd_varint(&p, end, &a) || !rd_varint(&p, end, &a) || p >= end) return;
			n = *p++;
			if (!skip_bytes(&p, end, n + NGTCP2_STATELESS_RESET_TOKENLEN)) return;
			break;
		case 0x1a: /* PATH_CHALLENGE */
		case 0x1b: /* PATH_RESPONSE */
			if (!skip_bytes(&p, end, 8)) return;
			break;
		case 0x1c: /* CONNECTION_CLOSE */
			if (!rd_varint(&p, end, &a) || !rd_varint(&p, end, &a) || !rd_varint(&p, end, &n) || !skip_bytes(&p, end, n))
				return;
			break;
		case 0x1d: /* CONNECTION_CLOSE (application) */
			if (!rd_varint(&p, end, &a) || !rd_varint(&p, end, &n) || !skip_bytes(&p, end, n)) return;
			break;
		case 0x31: /* DATAGRAM with length */
			if (!rd_varint(&p, end, &n) || !skip_bytes(&p, end, n)) return;
			break;
		default: /* DATAGRAM to the end, multi-byte or unknown types */
			return;
		}
	}
}

#if !MOQ_NGTCP2_1X
/*
 * The packet number of a 1-RTT packet from its header (the AAD: short header, protection removed),
 * decoded next to `largest` as RFC 9000 §A.3 and ngtcp2_pkt_adjust_pkt_num do; false for a long header.
 */
static bool short_header_pn(const uint8_t *aad, size_t aadlen, int64_t largest, int64_t *pn) {
	if (aadlen == 0 || (aad[0] & 0x80)) return false;
	size_t len = (size_t)(aad[0] & 3) + 1;
	if (aadlen < 1 + len) return false;
	int64_t truncated = 0;
	for (size_t i = aadlen - len; i < aadlen; i++) truncated = (truncated << 8) | aad[i];
	int64_t expected = largest + 1, win = (int64_t)1 << (8 * len), hwin = win / 2;
	int64_t cand = (expected & ~(win - 1)) | truncated;
	if (cand <= expected - hwin && cand < ((int64_t)1 << 62) - win) cand += win;
	else if (cand > expected + hwin && cand >= win) cand -= win;
	*pn = cand;
	return true;
}

/*
 * The ACK guard. libngtcp2 0.12 aborts in the next write (ngtcp2_put_uvarintlen: Assertion
 * `n < 4611686018427387904ULL') after this: the peer acknowledges a packet of ours whose ACK named
 * the largest packet number L that ngtcp2 received (ngtcp2 then forgets the received numbers up to
 * L, ngtcp2_acktr.c acktr_on_ack, but L stays its largest), then L - 1 arrives for the first time.
 * conn_create_ack_frame (ngtcp2_conn.c, the `else` of `rpkt->pkt_num == pktns->rx.max_pkt_num`)
 * then writes the first gap as L - (L - 1) - 2 = -1 as uint64_t. Fixed upstream in 0.16.0 (commit
 * e854e7ad). Any peer can do it, an honest one with a packet reordered by over a round trip too,
 * so nothing is closed: such a packet is dropped (as undecryptable) before ngtcp2 takes it, and the
 * peer sends its frames again as for a lost one. The engine follows L and the first of our packets
 * naming it (encrypt_cb) and the peer's ACKs (scan_frames): any ACK reaching that packet counts.
 */
static bool ack_guard_drops(qconn_t *q, const uint8_t *payload, size_t len, const uint8_t *aad, size_t aadlen) {
	int64_t pn;
	if (!q->named_valid || !short_header_pn(aad, aadlen, q->named_largest, &pn) || pn != q->named_largest - 1)
		return false;
	scan_frames(q, payload, len, false); /* this packet's own ACKs count too */
	return q->named_acked;
}
#endif /* the ACK guard: 0.12 only */

static int decrypt_cb(uint8_t *dest, const ngtcp2_crypto_aead *aead, const ngtcp2_crypto_aead_ctx *aead_ctx,
                      const uint8_t *ciphertext, size_t ciphertextlen, const uint8_t *nonce, size_t noncelen,
                      const uint8_t *aad, size_t aadlen) {
	int rv = ngtcp2_crypto_decrypt_cb(dest, aead, aead_ctx, ciphertext, ciphertextlen, nonce, noncelen, aad, aadlen);
	qconn_t *q = reading_conn;
	/* 1-RTT only (short header: the AAD is the header), where STOP_SENDING may be. */
	if (rv == 0 && q != NULL && q->conn != NULL && aadlen > 0 && !(aad[0] & 0x80) && ciphertextlen >= aead->max_overhead) {
#if !MOQ_NGTCP2_1X
		if (ack_guard_drops(q, dest, ciphertextlen - aead->max_overhead, aad, aadlen)) return NGTCP2_ERR_DECRYPT;
#endif
		scan_frames(q, dest, ciphertextlen - aead->max_overhead, true);
	}
	return rv;
}

/* The connection whose packets this thread is writing (encrypt_cb has no user data either). */
static __thread qconn_t *writing_conn;

/* Follows the ACK frames ngtcp2 writes in 1-RTT packets, for the ACK guard (ack_guard_drops); 1.x
 * needs no guard, and encrypts straight away. */
static int encrypt_cb(uint8_t *dest, const ngtcp2_crypto_aead *aead, const ngtcp2_crypto_aead_ctx *aead_ctx,
                      const uint8_t *plaintext, size_t plaintextlen, const uint8_t *nonce, size_t noncelen,
                      const uint8_t *aad, size_t aadlen) {
#if !MOQ_NGTCP2_1X
	qconn_t *q = writing_conn;
	int64_t pn;
	/* Before encrypting: ngtcp2 encrypts in place. */
	if (q != NULL && short_header_pn(aad, aadlen, q->tx_last_pn, &pn)) {
		q->tx_last_pn = pn;
		const uint8_t *p = plaintext, *end = plaintext + plaintextlen;
		uint64_t largest;
		/* ngtcp2 0.12 writes the ACK first, after a PATH_RESPONSE (type 0x1b, 8 bytes) if any. */
		if (end - p >= 9 && *p == 0x1b) p += 9;
		if (p < end && (*p == 0x02 || *p == 0x03) && (p++, rd_varint(&p, end, &largest)) && largest <= INT64_MAX &&
		    (!q->named_valid || (int64_t)largest != q->named_largest)) {
			q->named_valid = true;
			q->named_largest = (int64_t)largest;
			q->named_by_pn = pn;
			q->named_acked = false;
		}
	}
#endif
	return ngtcp2_crypto_encrypt_cb(dest, aead, aead_ctx, plaintext, plaintextlen, nonce, noncelen, aad, aadlen);
}

static void init_callbacks(ngtcp2_callbacks *cb) {
	memset(cb, 0, sizeof *cb);
	cb->recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
	cb->recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
	cb->encrypt = encrypt_cb;
	cb->decrypt = decrypt_cb;
	cb->hp_mask = ngtcp2_crypto_hp_mask_cb;
	cb->update_key = ngtcp2_crypto_update_key_cb;
	cb->delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
	cb->delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
	cb->get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
	cb->version_negotiation = ngtcp2_crypto_version_negotiation_cb;
	cb->rand = rand_cb;
	cb->get_new_connection_id = new_cid_cb;
	cb->stream_open = stream_open_cb;
	cb->recv_stream_data = recv_stream_data_cb;
	cb->acked_stream_data_offset = acked_cb;
	cb->stream_close = stream_close_cb;
	cb->stream_reset = stream_reset_cb;
}

/* ---- napi helpers ----------------------------------------------------------------------------- */

#define CHECK(call)                                                                                     \
	do {                                                                                                \
		if ((call) != napi_ok) return throw_pending_or(env, "ngtcp2 addon: " #call " failed");          \
	} while (0)

static napi_value throw_pending_or(napi_env env, const char *msg) {
	bool pending = false;
	napi_is_exception_pending(env, &pending);
	if (!pending) napi_throw_error(env, NULL, msg);
	return NULL;
}

static napi_value throw_msg(napi_env env, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static napi_value throw_msg(napi_env env, const char *fmt, ...) {
	char buf[128];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	napi_throw_error(env, NULL, buf);
	return NULL;
}

static napi_value js_null(napi_env env) {
	napi_value v;
	napi_get_null(env, &v);
	return v;
}

static napi_value js_undefined(napi_env env) {
	napi_value v;
	napi_get_undefined(env, &v);
	return v;
}

static napi_value js_bool(napi_env env, bool b) {
	napi_value v;
	napi_get_boolean(env, b, &v);
	return v;
}

static napi_value js_num(napi_env env, double d) {
	napi_value v;
	napi_create_double(env, d, &v);
	return v;
}

/* A Uint8Array / Buffer argument's bytes. */
static bool get_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len) {
	bool is_ta = false;
	if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) {
		napi_throw_type_error(env, NULL, "expected a Uint8Array");
		return false;
	}
	napi_typedarray_type type;
	void *p;
	size_t n;
	if (napi_get_typedarray_info(env, v, &type, &n, &p, NULL, NULL) != napi_ok || type != napi_uint8_array) {
		napi_throw_type_error(env, NULL, "expected a Uint8Array");
		return false;
	}
	*data = p;
	*len = n;
	return true;
}

/* A non-negative integer argument up to `max`. */
static bool get_uint(napi_env env, napi_value v, uint64_t max, uint64_t *out) {
	double d;
	if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0) || d > (double)max || d != (double)(uint64_t)d) {
		napi_throw_range_error(env, NULL, "expected a non-negative integer in range");
		return false;
	}
	*out = (uint64_t)d;
	return true;
}

static bool get_stream_id(napi_env env, napi_value v, int64_t *id) {
	uint64_t u;
	if (!get_uint(env, v, (1ULL << 62) - 1, &u)) return false;
	*id = (int64_t)u;
	return true;
}

static bool get_named_uint(napi_env env, napi_value obj, const char *name, uint64_t max, uint64_t *out) {
	napi_value v;
	napi_valuetype t;
	if (napi_get_named_property(env, obj, name, &v) != napi_ok || napi_typeof(env, v, &t) != napi_ok) return false;
	if (t == napi_undefined) return true; /* keep the default */
	if (!get_uint(env, v, max, out)) return false;
	return true;
}

/* {host, port} into a sockaddr. */
static bool get_hostport(napi_env env, napi_value obj, struct sockaddr_storage *ss, socklen_t *sslen, char *host_out,
                         size_t host_cap, uint32_t *port_out) {
	napi_value hv, pv;
	char host[64];
	size_t n = 0;
	uint64_t port;
	if (napi_get_named_property(env, obj, "host", &hv) != napi_ok ||
	    napi_get_value_string_utf8(env, hv, host, sizeof host, &n) != napi_ok) {
		napi_throw_type_error(env, NULL, "expected {host, port}");
		return false;
	}
	if (napi_get_named_property(env, obj, "port", &pv) != napi_ok || !get_uint(env, pv, 65535, &port)) return false;
	char *pct = strchr(host, '%');
	if (pct) *pct = 0;
	memset(ss, 0, sizeof *ss);
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		*sslen = sizeof *a6;
	} else if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		*sslen = sizeof *a4;
	} else {
		napi_throw_type_error(env, NULL, "invalid IP address");
		return false;
	}
	if (host_out) snprintf(host_out, host_cap, "%s", host);
	if (port_out) *port_out = (uint32_t)port;
	return true;
}

static instance_t *instance(napi_env env) {
	void *data = NULL;
	if (napi_get_instance_data(env, &data) != napi_ok) return NULL;
	return data;
}

/* ---- Config ----------------------------------------------------------------------------------- */

static void config_finalize(napi_env env, void *data, void *hint) {
	(void)env;
	(void)hint;
	config_unref(data);
}

/* new Config(certPem, keyPem, alpns: string[], limits?: {...}) */
static napi_value config_new(napi_env env, napi_callback_info info) {
	size_t argc = 4;
	napi_value argv[4], self;
	CHECK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
	if (argc < 3) return throw_msg(env, "Config(cert, key, alpns, limits)");
	uint8_t *cert, *key;
	size_t cert_len, key_len;
	if (!get_bytes(env, argv[0], &cert, &cert_len) || !get_bytes(env, argv[1], &key, &key_len)) return NULL;
	if (cert_len > UINT32_MAX || key_len > UINT32_MAX) return throw_msg(env, "certificate too large");
	config_t *c = calloc(1, sizeof *c);
	if (c == NULL) return throw_msg(env, "out of memory");
	c->refs = 1;
	c->idle_timeout_ms = 30000;
	c->keep_alive_ms = 0;
	c->handshake_timeout_ms = 10000;
	c->max_data = 16 << 20;
	c->max_stream_data = 4 << 20;
	c->max_streams_bidi = 1024;
	c->max_streams_uni = 1024;
	c->max_window = 24 << 20;
	c->max_stream_window = 16 << 20;
	bool is_array = false;
	uint32_t n_alpns = 0;
	if (napi_is_array(env, argv[2], &is_array) != napi_ok || !is_array ||
	    napi_get_array_length(env, argv[2], &n_alpns) != napi_ok || n_alpns == 0 || n_alpns > MAX_ALPNS) {
		config_unref(c);
		return throw_msg(env, "alpns: 1 to 32 strings");
	}
	for (uint32_t i = 0; i < n_alpns; i++) {
		napi_value e;
		size_t n = 0;
		if (napi_get_element(env, argv[2], i, &e) != napi_ok ||
		    napi_get_value_string_utf8(env, e, (char *)c->alpn_bytes[i], 256, &n) != napi_ok || n == 0 || n > 255) {
			config_unref(c);
			return throw_msg(env, "alpns: 1 to 32 strings of 1 to 255 bytes");
		}
		c->alpns[i].data = c->alpn_bytes[i];
		c->alpns[i].size = (unsigned)n;
	}
	c->n_alpns = n_alpns;
	if (argc >= 4) {
		napi_valuetype t;
		napi_typeof(env, argv[3], &t);
		if (t == napi_object) {
			const uint64_t big = 1ULL << 53;
			if (!get_named_uint(env, argv[3], "idleTimeoutMs", 1ULL << 40, &c->idle_timeout_ms) ||
			    !get_named_uint(env, argv[3], "keepAliveMs", 1ULL << 40, &c->keep_alive_ms) ||
			    !get_named_uint(env, argv[3], "handshakeTimeoutMs", 1ULL << 40, &c->handshake_timeout_ms) ||
			    !get_named_uint(env, argv[3], "maxData", big, &c->max_data) ||
			    !get_named_uint(env, argv[3], "maxStreamData", big, &c->max_stream_data) ||
			    !get_named_uint(env, argv[3], "maxStreamsBidi", 1ULL << 40, &c->max_streams_bidi) ||
			    !get_named_uint(env, argv[3], "maxStreamsUni", 1ULL << 40, &c->max_streams_uni) ||
			    !get_named_uint(env, argv[3], "maxConnectionWindow", big, &c->max_window) ||
			    !get_named_uint(env, argv[3], "maxStreamWindow", big, &c->max_stream_window)) {
				config_unref(c);
				return throw_pending_or(env, "invalid limits");
			}
		}
	}
	int rv = gnutls_certificate_allocate_credentials(&c->cred);
	if (rv == 0) {
		gnutls_datum_t cd = {cert, (unsigned)cert_len}, kd = {key, (unsigned)key_len};
		rv = gnutls_certificate_set_x509_key_mem2(c->cred, &cd, &kd, GNUTLS_X509_FMT_PEM, NULL, 0);
	}
	if (rv < 0) {
		config_unref(c);
		return throw_msg(env, "certificate/key: %s", gnutls_strerror(rv));
	}
	rv = gnutls_priority_init(&c->priority, PRIORITY, NULL);
	if (rv < 0) {
		config_unref(c);
		return throw_msg(env, "priority: %s", gnutls_strerror(rv));
	}
	if (napi_wrap(env, self, c, config_finalize, NULL, NULL) != napi_ok) {
		config_unref(c);
		return throw_pending_or(env, "napi_wrap failed");
	}
	napi_type_tag_object(env, self, &CONFIG_TAG);
	return self;
}

/* ---- Connection ------------------------------------------------------------------------------- */

static void slots_unref(slot_table_t *t) {
	if (t == NULL || --t->refs > 0) return;
	free(t->conns);
	free(t->free_next);
	free(t->cids);
	free(t);
}

static qconn_t CID_GONE_MARK;
#define CID_GONE (&CID_GONE_MARK)

static size_t cid_hash(const uint8_t *cid) {
	/* Our CIDs are random past their first byte (the worker index). */
	uint64_t h;
	memcpy(&h, cid + FAST_CID_LEN - 8, 8);
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	return (size_t)(h ^ (h >> 32));
}

static qconn_t *cid_find(const slot_table_t *t, const uint8_t *cid) {
	if (t->cid_cap == 0) return NULL;
	size_t mask = t->cid_cap - 1;
	for (size_t i = cid_hash(cid) & mask;; i = (i + 1) & mask) {
		const cid_entry_t *e = &t->cids[i];
		if (e->q == NULL) return NULL;
		if (e->q != CID_GONE && memcmp(e->cid, cid, FAST_CID_LEN) == 0) return e->q;
	}
}

static bool cid_grow(slot_table_t *t) {
	size_t cap = t->cid_cap ? t->cid_cap * 2 : 256;
	/* Only deleted entries to clear: rehash at the same size. */
	if (t->cid_used * 4 < t->cid_cap) cap = t->cid_cap;
	cid_entry_t *cids = calloc(cap, sizeof *cids);
	if (cids == NULL) return false;
	for (size_t i = 0; i < t->cid_cap; i++) {
		cid_entry_t *e = &t->cids[i];
		if (e->q == NULL || e->q == CID_GONE) continue;
		size_t j = cid_hash(e->cid) & (cap - 1);
		while (cids[j].q != NULL) j = (j + 1) & (cap - 1);
		cids[j] = *e;
	}
	free(t->cids);
	t->cids = cids;
	t->cid_cap = cap;
	t->cid_gone = 0;
	return true;
}

/* Indexes `cid` for `q` (false when out of memory: recvMany then leaves its packets to JS). */
static bool cid_add(slot_table_t *t, const uint8_t *cid, qconn_t *q) {
	if ((t->cid_used + t->cid_gone + 1) * 2 > t->cid_cap && !cid_grow(t)) return false;
	size_t mask = t->cid_cap - 1;
	size_t i = cid_hash(cid) & mask;
	while (t->cids[i].q != NULL && t->cids[i].q != CID_GONE) {
		if (memcmp(t->cids[i].cid, cid, FAST_CID_LEN) == 0) return false; /* taken: keep the first */
		i = (i + 1) & mask;
	}
	if (t->cids[i].q == CID_GONE) t->cid_gone--;
	memcpy(t->cids[i].cid, cid, FAST_CID_LEN);
	t->cids[i].q = q;
	t->cid_used++;
	return true;
}

static void cid_remove_conn(slot_table_t *t, const uint8_t *cid, const qconn_t *q) {
	if (t->cid_cap == 0) return;
	size_t mask = t->cid_cap - 1;
	for (size_t i = cid_hash(cid) & mask;; i = (i + 1) & mask) {
		cid_entry_t *e = &t->cids[i];
		if (e->q == NULL) return;
		if (e->q == q && memcmp(e->cid, cid, FAST_CID_LEN) == 0) {
			e->q = CID_GONE;
			t->cid_used--;
			t->cid_gone++;
			return;
		}
	}
}

/* Every connection ID of `q` (its first and the ones ngtcp2 issues from `extra`), applied to `fn`. */
static void cid_index(slot_table_t *t, qconn_t *q, bool add) {
	if (q->scid_len != FAST_CID_LEN) return;
	if (add) cid_add(t, q->scid, q);
	else cid_remove_conn(t, q->scid, q);
	for (int i = 0; i < EXTRA_CIDS; i++) {
		if (add) cid_add(t, q->extra[i], q);
		else cid_remove_conn(t, q->extra[i], q);
	}
}

/* A slot for `q` (false when out of memory). */
static bool slot_take(slot_table_t *t, qconn_t *q) {
	if (t->next_free == UINT32_MAX) {
		uint32_t cap = t->cap ? t->cap * 2 : 64;
		if (cap <= t->cap) return false;
		qconn_t **conns = realloc(t->conns, cap * sizeof *conns);
		if (conns == NULL) return false;
		t->conns = conns;
		uint32_t *next = realloc(t->free_next, cap * sizeof *next);
		if (next == NULL) return false;
		t->free_next = next;
		for (uint32_t i = t->cap; i < cap; i++) {
			t->conns[i] = NULL;
			t->free_next[i] = i + 1 < cap ? i + 1 : UINT32_MAX;
		}
		t->next_free = t->cap;
		t->cap = cap;
	}
	uint32_t i = t->next_free;
	t->next_free = t->free_next[i];
	t->conns[i] = q;
	t->refs++;
	q->slots = t;
	q->slot = i;
	cid_index(t, q, true);
	return true;
}

static void slot_release(qconn_t *q) {
	slot_table_t *t = q->slots;
	if (t == NULL) return;
	cid_index(t, q, false);
	t->conns[q->slot] = NULL;
	t->free_next[q->slot] = t->next_free;
	t->next_free = q->slot;
	q->slots = NULL;
	slots_unref(t);
}

static void conn_finalize(napi_env env, void *data, void *hint) {
	(void)env;
	(void)hint;
	qconn_t *q = data;
	slot_release(q);
	/* The connection first (it calls no callbacks on deletion), then what its streams held. */
	if (q->conn) ngtcp2_conn_del(q->conn);
	q->conn = NULL;
	for (size_t i = 0; i < q->streams.cap; i++) {
		stream_t *s = q->streams.slots[i];
		if (s == NULL) continue;
		chunk_t *c = s->head;
		while (c) {
			chunk_t *n = c->next;
			chunk_free(c);
			c = n;
		}
		free(s->rbuf);
		free(s);
	}
	free(q->streams.slots);
	free(q->release);
	if (q->tls) gnutls_deinit(q->tls);
	config_unref(q->cfg);
	free(q);
}

static napi_value conn_ctor(napi_env env, napi_callback_info info) {
	napi_value self;
	CHECK(napi_get_cb_info(env, info, NULL, NULL, &self, NULL));
	return self;
}

/* The connection of the napi call in progress (set by this_conn; read by the REFRESHING wrappers). */
static __thread qconn_t *called_conn;

static qconn_t *this_conn_min(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv, size_t want);

static qconn_t *this_conn(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
	return this_conn_min(env, info, argc, argv, argc ? *argc : 0);
}

static qconn_t *this_conn_min(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv, size_t want) {
	napi_value self;
	if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok) return NULL;
	if (argc && *argc < want) {
		napi_throw_type_error(env, NULL, "missing arguments");
		return NULL;
	}
	bool ok = false;
	void *p = NULL;
	if (napi_check_object_type_tag(env, self, &CONN_TAG, &ok) != napi_ok || !ok ||
	    napi_unwrap(env, self, &p) != napi_ok || p == NULL) {
		napi_throw_type_error(env, NULL, "not an ngtcp2 Connection");
		return NULL;
	}
	called_conn = p;
	return p;
}

/* Milliseconds until the connection wants onTimeout(), or -1 for never (quiche's timeout(): null). */
static double timeout_ms(qconn_t *q) {
	uint64_t now = now_ns(), at;
	switch (q->state) {
	case ST_OPEN:
		at = ngtcp2_conn_get_expiry(q->conn);
		break;
	case ST_CLOSE_PENDING:
		at = now;
		break;
	case ST_CLOSING:
	case ST_DRAINING:
		at = q->close_deadline;
		break;
	default:
		return -1;
	}
	if (at == UINT64_MAX) return -1;
	return at <= now ? 0 : (double)(at - now) / 1e6;
}

static void refresh_state(qconn_t *q) {
	double *st = q->shared;
	if (st == NULL) return;
	st[STATE_TIMEOUT] = timeout_ms(q);
	int flags = 0;
	if (q->conn != NULL && ngtcp2_conn_get_handshake_completed(q->conn)) flags |= FLAG_ESTABLISHED;
	if (q->state == ST_CLOSING || q->state == ST_DRAINING || q->state == ST_CLOSED) flags |= FLAG_DRAINING;
	if (q->state == ST_CLOSED || q->state == ST_REJECTED) flags |= FLAG_CLOSED;
	if (q->timed_out) flags |= FLAG_TIMED_OUT;
	st[STATE_FLAGS] = flags;
	st[STATE_EVENTS] = q->events;
}

/* A method after which `state` is written (the calls that change a connection's timer or state). */
#define REFRESHING(name) \
	static napi_value name##_body(napi_env env, napi_callback_info info); \
	static napi_value name(napi_env env, napi_callback_info info) { \
		called_conn = NULL; \
		napi_value out = name##_body(env, info); \
		if (called_conn != NULL) refresh_state(called_conn); \
		return out; \
	}

/* Connection.accept(scid, odcid | null, local, remote, config) */
static napi_value conn_accept(napi_env env, napi_callback_info info) {
	size_t argc = 5;
	napi_value argv[5];
	CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	if (argc < 5) return throw_msg(env, "accept(scid, odcid, local, remote, config)");
	uint8_t *scid, *odcid = NULL;
	size_t scid_len, odcid_len = 0;
	if (!get_bytes(env, argv[0], &scid, &scid_len)) return NULL;
	if (scid_len == 0 || scid_len > NGTCP2_MAX_CIDLEN) return throw_msg(env, "scid: 1 to 20 bytes");
	napi_valuetype t;
	napi_typeof(env, argv[1], &t);
	if (t != napi_null && t != napi_undefined) {
		if (!get_bytes(env, argv[1], &odcid, &odcid_len)) return NULL;
		if (odcid_len > NGTCP2_MAX_CIDLEN) return throw_msg(env, "odcid: at most 20 bytes");
	}
	bool ok = false;
	void *cp = NULL;
	if (napi_check_object_type_tag(env, argv[4], &CONFIG_TAG, &ok) != napi_ok || !ok ||
	    napi_unwrap(env, argv[4], &cp) != napi_ok || cp == NULL)
		return throw_msg(env, "config: not an ngtcp2 Config");
	qconn_t *q = calloc(1, sizeof *q);
	if (q == NULL) return throw_msg(env, "out of memory");
	if (!get_hostport(env, argv[2], &q->local, &q->local_len, NULL, 0, NULL) ||
	    !get_hostport(env, argv[3], &q->remote, &q->remote_len, q->remote_host, sizeof q->remote_host, &q->remote_port)) {
		free(q);
		return NULL;
	}
	q->cfg = cp;
	q->cfg->refs++;
	memcpy(q->scid, scid, scid_len);
	q->scid_len = scid_len;
	if (odcid) {
		memcpy(q->odcid, odcid, odcid_len);
		q->odcid_len = odcid_len;
		q->has_odcid = true;
	}
	for (int i = 0; i < EXTRA_CIDS; i++) {
		gnutls_rnd(GNUTLS_RND_NONCE, q->extra[i], scid_len);
		q->extra[i][0] = scid[0]; /* the worker index (src/quic/cid.ts) */
	}
	q->state = ST_NEW;
	instance_t *inst = instance(env);
	napi_value ctor, obj;
	if (inst == NULL || napi_get_reference_value(env, inst->conn_ctor, &ctor) != napi_ok ||
	    napi_new_instance(env, ctor, 0, NULL, &obj) != napi_ok) {
		config_unref(q->cfg);
		free(q);
		return throw_pending_or(env, "cannot create a Connection");
	}
	if (napi_wrap(env, obj, q, conn_finalize, NULL, NULL) != napi_ok) {
		config_unref(q->cfg);
		free(q);
		return throw_pending_or(env, "napi_wrap failed");
	}
	napi_type_tag_object(env, obj, &CONN_TAG);
	napi_value buffer, array;
	void *memory;
	if (napi_create_arraybuffer(env, STATE_SLOTS * sizeof(double), &memory, &buffer) != napi_ok ||
	    napi_create_typedarray(env, napi_float64_array, STATE_SLOTS, buffer, 0, &array) != napi_ok)
		return throw_pending_or(env, "cannot create the state array");
	/* Not writable, not configurable: the object keeps the array (and so `shared`) alive. */
	napi_property_descriptor prop = {"state", NULL, NULL, NULL, NULL, array, napi_enumerable, NULL};
	if (napi_define_properties(env, obj, 1, &prop) != napi_ok) return throw_pending_or(env, "cannot set the state array");
	q->shared = memory;
	refresh_state(q);
	q->shared[STATE_SLOT] = -1;
	if (inst->slots != NULL && slot_take(inst->slots, q)) q->shared[STATE_SLOT] = q->slot;
	return obj;
}

/*
 * ALPN: GnuTLS takes at most 8 protocols per session and the relay offers more (moq-lite, moqt
 * drafts, h3). Before the client hello is processed, this hook reads the client's ALPN list and
 * sets only the protocols both sides have, in our order (GnuTLS then picks the first).
 */
typedef struct {
	const config_t *cfg;
	bool offered[MAX_ALPNS];
	bool has_transport_params;
} alpn_scan_t;

/* TLS extension 0x39: quic_transport_parameters (RFC 9001 §8.2). */
#define TLS_EXT_QUIC_TRANSPORT_PARAMETERS 0x39

static int alpn_ext_cb(void *ctx, unsigned tls_id, const unsigned char *data, unsigned size) {
	alpn_scan_t *scan = ctx;
	if (tls_id == TLS_EXT_QUIC_TRANSPORT_PARAMETERS) scan->has_transport_params = true;
	if (tls_id != 16 || size < 2) return 0;
	size_t list = ((size_t)data[0] << 8) | data[1];
	if (list + 2 > size) return 0;
	size_t off = 2, end = 2 + list;
	while (off < end) {
		size_t n = data[off++];
		if (n == 0 || off + n > end) break;
		for (unsigned i = 0; i < scan->cfg->n_alpns; i++) {
			if (scan->cfg->alpns[i].size == n && memcmp(scan->cfg->alpns[i].data, data + off, n) == 0) scan->offered[i] = true;
		}
		off += n;
	}
	return 0;
}

static int client_hello_hook(gnutls_session_t session, unsigned htype, unsigned when, unsigned incoming,
                             const gnutls_datum_t *msg) {
	(void)htype;
	(void)when;
	(void)incoming;
	ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(session);
	if (ref == NULL || msg == NULL) return 0;
	qconn_t *q = ref->user_data;
	alpn_scan_t scan = {.cfg = q->cfg};
	gnutls_ext_raw_parse(&scan, alpn_ext_cb, msg, GNUTLS_EXT_RAW_FLAG_TLS_CLIENT_HELLO);
	/* RFC 9001 §8.2: a ClientHello without QUIC transport parameters ends the handshake with
	 * missing_extension. libngtcp2 0.12 would go on and abort the process (its negotiated_version
	 * assertion) writing the server's first flight: one datagram would kill the worker. */
	if (!scan.has_transport_params) return GNUTLS_E_MISSING_EXTENSION;
	/*
	 * Once per session: GnuTLS (3.7.9 and later, lib/ext/alpn.c) never resets its protocol count,
	 * each gnutls_alpn_set_protocols call adds its protocols to it (priv->size++) while writing them
	 * from index 0. Calls adding up to more than 8 made the server's ALPN parser walk past its
	 * 312-byte state (protocols[13] is 104 bytes past the end; protocol_size[13] is its `flags`, 3)
	 * and memcmp a client's 3-byte name against a neighbouring heap block: the heap-use-after-free
	 * of `npm run fuzz:quic -- --seed 2` (case 45922). So conn_create sets none, and a second
	 * ClientHello (after a HelloRetryRequest) keeps the first one's list (RFC 8446 §4.1.2: the
	 * same ALPN offer).
	 */
	if (q->alpn_set) return 0;
	q->alpn_set = true;
	gnutls_datum_t chosen[GNUTLS_MAX_ALPNS];
	unsigned n = 0;
	for (unsigned i = 0; i < q->cfg->n_alpns && n < GNUTLS_MAX_ALPNS; i++) {
		if (scan.offered[i]) chosen[n++] = q->cfg->alpns[i];
	}
	/* No common protocol: offer ours, and the handshake fails with no_application_protocol. */
	if (n == 0) {
		n = q->cfg->n_alpns < GNUTLS_MAX_ALPNS ? q->cfg->n_alpns : GNUTLS_MAX_ALPNS;
		memcpy(chosen, q->cfg->alpns, n * sizeof chosen[0]);
	}
	/* A failed call may have set some protocols but not GNUTLS_ALPN_MANDATORY: end the handshake. */
	int rv = gnutls_alpn_set_protocols(session, chosen, n, GNUTLS_ALPN_MANDATORY | GNUTLS_ALPN_SERVER_PRECEDENCE);
	return rv < 0 ? rv : 0;
}

/* Creates the ngtcp2 connection from the client's first Initial. Returns 0 or an ngtcp2 error. */
static int conn_create(qconn_t *q, const uint8_t *pkt, size_t len) {
	ngtcp2_pkt_hd hd;
	int rv = ngtcp2_accept(&hd, pkt, len);
	if (rv != 0) return rv;
	config_t *c = q->cfg;
	ngtcp2_callbacks cb;
	init_callbacks(&cb);
	ngtcp2_settings st;
	ngtcp2_settings_default(&st);
	st.initial_ts = now_ns();
	st.max_tx_udp_payload_size = MAX_UDP_PAYLOAD;
	/* Without this ngtcp2 sends 1200-byte packets (RFC 9000 §14's minimum) until Path MTU Discovery
	 * raises the size, and PMTUD is off: 12 % more packets than the quiche engine for the same bytes.
	 * With it a packet is as large as MAX_UDP_PAYLOAD and the peer's max_udp_payload_size allow, as
	 * quiche sends (its MAX_SEND_UDP_PAYLOAD_SIZE is 1350 too). */
	st.no_tx_udp_payload_size_shaping = 1;
	st.no_pmtud = 1;
	st.max_window = c->max_window;
	st.max_stream_window = c->max_stream_window;
	st.cc_algo = NGTCP2_CC_ALGO_CUBIC;
	st.handshake_timeout = c->handshake_timeout_ms ? c->handshake_timeout_ms * NGTCP2_MILLISECONDS : UINT64_MAX;
	if (q->has_odcid) {
		/* The Initial answers our Retry: its token was checked by the JS side (src/quic/retry.ts). */
#if MOQ_NGTCP2_1X
		st.token = hd.token;
		st.tokenlen = hd.tokenlen;
		st.token_type = NGTCP2_TOKEN_TYPE_RETRY;
#else
		st.token.base = hd.token.base;
		st.token.len = hd.token.len;
#endif
	}
	ngtcp2_transport_params p;
	ngtcp2_transport_params_default(&p);
	p.initial_max_stream_data_bidi_local = c->max_stream_data;
	p.initial_max_stream_data_bidi_remote = c->max_stream_data;
	p.initial_max_stream_data_uni = c->max_stream_data;
	p.initial_max_data = c->max_data;
	p.initial_max_streams_bidi = c->max_streams_bidi;
	p.initial_max_streams_uni = c->max_streams_uni;
	p.max_idle_timeout = c->idle_timeout_ms * NGTCP2_MILLISECONDS;
	p.max_udp_payload_size = MAX_UDP_PAYLOAD;
	p.disable_active_migration = 1;
	/* WebTransport (Chromium) wants datagram support advertised; we never read any. */
	p.max_datagram_frame_size = 65535;
	/* The server names the client's first destination ID (RFC 9000 §7.3); 0.12 has no
	 * original_dcid_present and always sends it. */
	if (q->has_odcid) {
		ngtcp2_cid_init(&p.original_dcid, q->odcid, q->odcid_len);
		p.retry_scid = hd.dcid;
		p.retry_scid_present = 1;
	} else {
		p.original_dcid = hd.dcid;
	}
#if MOQ_NGTCP2_1X
	p.original_dcid_present = 1;
#endif
	ngtcp2_cid scid;
	ngtcp2_cid_init(&scid, q->scid, q->scid_len);
	ngtcp2_path path = {{(ngtcp2_sockaddr *)&q->local, q->local_len}, {(ngtcp2_sockaddr *)&q->remote, q->remote_len}, NULL};
	q->mem = (ngtcp2_mem){.user_data = q, .malloc = counted_malloc, .free = counted_free, .calloc = counted_calloc, .realloc = counted_realloc};
	rv = ngtcp2_conn_server_new(&q->conn, &hd.scid, &scid, &path, hd.version, &cb, &st, &p, &q->mem, q);
	if (rv != 0) {
		q->conn = NULL;
		return rv;
	}
	if (gnutls_init(&q->tls, GNUTLS_SERVER | GNUTLS_NO_AUTO_SEND_TICKET | GNUTLS_NO_END_OF_EARLY_DATA) != 0) {
		q->tls = NULL;
		return NGTCP2_ERR_NOMEM;
	}
	if (gnutls_priority_set(q->tls, c->priority) != 0 ||
	    gnutls_credentials_set(q->tls, GNUTLS_CRD_CERTIFICATE, c->cred) != 0 ||
	    ngtcp2_crypto_gnutls_configure_server_session(q->tls) != 0)
		return NGTCP2_ERR_INTERNAL;
	gnutls_handshake_set_hook_function(q->tls, GNUTLS_HANDSHAKE_CLIENT_HELLO, GNUTLS_HOOK_PRE, client_hello_hook);
	q->ref.get_conn = get_conn;
	q->ref.user_data = q;
	gnutls_session_set_ptr(q->tls, &q->ref);
	ngtcp2_conn_set_tls_native_handle(q->conn, q->tls);
	if (c->keep_alive_ms > 0) ngtcp2_conn_set_keep_alive_timeout(q->conn, c->keep_alive_ms * NGTCP2_MILLISECONDS);
	q->state = ST_OPEN;
	return 0;
}

static void enter_period(qconn_t *q, int state) {
	q->state = state;
	q->close_deadline = now_ns() + 3 * ngtcp2_conn_get_pto(q->conn);
}

/* recv(data, {from: {host, port}, to}) */
/*
 * recv(data[, recvInfo]): without recvInfo the packet came from the peer's current address (accept
 * named it); connection.ts passes it only when the address changed (NAT rebinding), which saves
 * reading {from: {host, port}} through four napi calls per packet.
 */
REFRESHING(conn_recv)
static int read_open(qconn_t *q, const uint8_t *data, size_t len);

static napi_value conn_recv_body(napi_env env, napi_callback_info info) {
	size_t argc = 2;
	napi_value argv[2];
	qconn_t *q = this_conn_min(env, info, &argc, argv, 1);
	if (q == NULL) return NULL;
	uint8_t *data;
	size_t len;
	if (!get_bytes(env, argv[0], &data, &len)) return NULL;
	napi_valuetype info_type = napi_undefined;
	if (argc >= 2 && napi_typeof(env, argv[1], &info_type) != napi_ok) return NULL;
	if (info_type != napi_undefined) {
		/* The peer's address: reparsed only when it changed. */
		napi_value from, hv, pv;
		char host[64];
		size_t hn = 0;
		double port = -1;
		if (napi_get_named_property(env, argv[1], "from", &from) != napi_ok ||
		    napi_get_named_property(env, from, "host", &hv) != napi_ok ||
		    napi_get_value_string_utf8(env, hv, host, sizeof host, &hn) != napi_ok ||
		    napi_get_named_property(env, from, "port", &pv) != napi_ok || napi_get_value_double(env, pv, &port) != napi_ok)
			return throw_pending_or(env, "recvInfo: expected {from: {host, port}}");
		if (port != (double)q->remote_port || strcmp(host, q->remote_host) != 0) {
			if (!get_hostport(env, from, &q->remote, &q->remote_len, q->remote_host, sizeof q->remote_host, &q->remote_port))
				return NULL;
		}
	}
	q->pkts_recv++;
	q->bytes_recv += len;
	switch (q->state) {
	case ST_NEW: {
		int rv = conn_create(q, data, len);
		if (rv != 0) {
			q->state = ST_REJECTED;
			return throw_msg(env, "accept failed: %s", ngtcp2_strerror(rv));
		}
		break;
	}
	case ST_OPEN:
		break;
	case ST_CLOSING:
		/* RFC 9000 §10.2.1: answer packets in the closing period with the CONNECTION_CLOSE again. */
		q->resend_close = true;
		return js_num(env, (double)len);
	default:
		return js_num(env, (double)len);
	}
	int rv = read_open(q, data, len);
	if (rv == 0) return js_num(env, (double)len);
	if (rv == NGTCP2_ERR_DROP_CONN || rv == NGTCP2_ERR_RETRY) return throw_msg(env, "Done");
	return throw_msg(env, "%s", ngtcp2_strerror(rv));
}

/*
 * A packet for an open connection, read by ngtcp2, the connection's state following its verdict:
 * 0 when it was read (or belonged to the closing/draining period that began), else the error that
 * recv() reports.
 */
static int read_open(qconn_t *q, const uint8_t *data, size_t len) {
	ngtcp2_path path = {{(ngtcp2_sockaddr *)&q->local, q->local_len}, {(ngtcp2_sockaddr *)&q->remote, q->remote_len}, NULL};
	ngtcp2_pkt_info pi = {0};
	reading_conn = q;
	int rv = ngtcp2_conn_read_pkt(q->conn, &path, &pi, data, len, now_ns());
	reading_conn = NULL;
	release_pending(q);
	if (rv == 0) return 0;
	switch (rv) {
	case NGTCP2_ERR_DRAINING: {
		moq_ccerr cc;
		moq_conn_get_ccerr(q->conn, &cc);
		q->peer_err.set = true;
		q->peer_err.app = cc.type == MOQ_CCERR_TYPE_APPLICATION;
		q->peer_err.code = cc.error_code;
		size_t n = cc.reasonlen > MAX_REASON ? MAX_REASON : cc.reasonlen;
		if (n > 0 && cc.reason) memcpy(q->peer_err.reason, cc.reason, n);
		q->peer_err.reason_len = n;
		enter_period(q, ST_DRAINING);
		return 0;
	}
	case NGTCP2_ERR_CLOSING:
		return 0;
	case NGTCP2_ERR_DROP_CONN:
	case NGTCP2_ERR_RETRY:
		q->state = q->pkts_recv == 1 ? ST_REJECTED : ST_CLOSED;
		return rv;
	default:
		if (q->pkts_recv == 1 && rv != NGTCP2_ERR_CRYPTO) {
			/* The first Initial was undecryptable or invalid: drop the state without a word (quiche
			 * does not answer either; answering would amplify a spoofed packet). A TLS failure on a
			 * decrypted ClientHello (e.g. no common ALPN) is answered with its alert, as quiche does. */
			q->state = ST_REJECTED;
			return rv;
		}
		set_local_error_liberr(q, rv);
		return rv;
	}
}

/* Whether the datagram's source (recvMany's meta: port, family 4|6, address bytes) is q's peer. */
static bool same_peer(const qconn_t *q, int32_t port, int32_t family, const int32_t *addr) {
	if (q->remote.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&q->remote;
		return family == 6 && ntohs(a->sin6_port) == port && memcmp(&a->sin6_addr, addr, 16) == 0;
	}
	if (q->remote.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&q->remote;
		return family == 4 && ntohs(a->sin_port) == port && memcmp(&a->sin_addr, addr, 4) == 0;
	}
	return false;
}

/* Layout of recvMany's meta (native/udp.c RECV_*: the batch receiver fills it). */
enum { META_LENGTH, META_PORT, META_FAMILY, META_ADDR, META_STRIDE = META_ADDR + 4 };

/*
 * recvMany(buffer, slotSize, meta: Int32Array, count, out: Int32Array): reads the short-header
 * packets of a recvmmsg batch (datagram i at buffer[i * slotSize], its length and source in meta)
 * whose connection ID names a connection of this thread that the app enabled (enableFastRecv), from
 * that connection's current peer address: the ACKs that are most of a relay's ingress, without a
 * JS call each. out[i] = slot * 2 + (1 when ngtcp2 refused the packet) for those, -1 for the rest
 * (the app handles them as before: other workers' and unknown IDs, long headers, a new peer
 * address, connections not open). Returns how many it read.
 */
static napi_value recv_many(napi_env env, napi_callback_info info) {
	size_t argc = 5;
	napi_value argv[5];
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
	if (argc < 5) return throw_msg(env, "recvMany(buffer, slotSize, meta, count, out): missing arguments");
	uint8_t *buf;
	size_t buf_len;
	uint64_t slot_size, count;
	if (!get_bytes(env, argv[0], &buf, &buf_len) || !get_uint(env, argv[1], 1 << 20, &slot_size) ||
	    !get_uint(env, argv[3], UINT32_MAX, &count))
		return NULL;
	napi_typedarray_type type;
	size_t meta_n, out_n;
	void *p_meta, *p_out;
	if (napi_get_typedarray_info(env, argv[2], &type, &meta_n, &p_meta, NULL, NULL) != napi_ok || type != napi_int32_array)
		return throw_msg(env, "meta: expected an Int32Array");
	if (napi_get_typedarray_info(env, argv[4], &type, &out_n, &p_out, NULL, NULL) != napi_ok || type != napi_int32_array)
		return throw_msg(env, "out: expected an Int32Array");
	if (slot_size == 0 || count > out_n || count * META_STRIDE > meta_n || count * slot_size > buf_len)
		return throw_msg(env, "count: beyond an array");
	instance_t *inst = instance(env);
	if (inst == NULL || inst->slots == NULL) return throw_msg(env, "no instance");
	const slot_table_t *t = inst->slots;
	const int32_t *meta = p_meta;
	int32_t *out = p_out;
	uint32_t read = 0;
	for (size_t i = 0; i < count; i++) {
		out[i] = -1;
		const int32_t *m = meta + i * META_STRIDE;
		int32_t len = m[META_LENGTH];
		if (len < 1 + FAST_CID_LEN || (uint64_t)len > slot_size) continue;
		const uint8_t *data = buf + i * slot_size;
		/* RFC 9000 §17.3: a short header has the form bit (0x80) clear. Its fixed bit (0x40) is not
		 * checked: both sides advertise grease_quic_bit (RFC 9287), so peers clear it in about half
		 * their packets, and ngtcp2 decides, as for any packet, whether a clear bit was agreed. */
		if ((data[0] & 0x80) != 0) continue;
		qconn_t *q = cid_find(t, data + 1);
		if (q == NULL || !q->fast_recv || q->state != ST_OPEN || q->conn == NULL) continue;
		if (!same_peer(q, m[META_PORT], m[META_FAMILY], m + META_ADDR)) continue;
		q->pkts_recv++;
		q->bytes_recv += (uint64_t)len;
		int rv = read_open(q, data, (size_t)len);
		refresh_state(q);
		out[i] = (int32_t)(q->slot * 2 + (rv != 0 ? 1 : 0));
		read++;
	}
	return js_num(env, read);
}

/* enableFastRecv(): recvMany may read this connection's short-header packets from now on. */
static napi_value conn_enable_fast_recv(napi_env env, napi_callback_info info) {
	size_t argc = 0;
	qconn_t *q = this_conn(env, info, &argc, NULL);
	if (q == NULL) return NULL;
	q->fast_recv = q->slots != NULL && q->scid_len == FAST_CID_LEN;
	return js_bool(env, q->fast_recv);
}

static size_t stream_vecs(stream_t *s, ngtcp2_vec *vec, size_t max, uint64_t *total) {
	size_t n = 0;
	uint64_t t = 0;
	for (chunk_t *c = s->head; c && n < max; c = c->next) {
		uint64_t end = c->off + c->len;
		if (end <= s->sent) continue;
		uint64_t from = s->sent > c->off ? s->sent - c->off : 0;
		vec[n].base = c->base + from;
		vec[n].len = (size_t)(c->len - from);
		t += vec[n].len;
		n++;
	}
	*total = t;
	return n;
}

static stream_t *sched_pick(qconn_t *q) {
	for (int l = 0; l < LEVELS; l++) {
		for (stream_t *s = q->sched_head[l]; s; s = s->next) {
			if (s->skip_epoch != q->epoch) return s;
		}
	}
	return NULL;
}

/* Builds one packet into dest. Returns its length, 0 when there is nothing to send, or an ngtcp2 error. */
static ngtcp2_ssize write_packet(qconn_t *q, uint8_t *dest, size_t destlen, uint64_t ts) {
	ngtcp2_path_storage ps;
	ngtcp2_path_storage_zero(&ps);
	ngtcp2_pkt_info pi;
	q->epoch++;
	for (int guard = 0; guard < 4096; guard++) {
		stream_t *s = sched_pick(q);
		ngtcp2_vec vec[MAX_VECS];
		size_t nvec = 0;
		uint64_t total = 0;
		uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_NONE;
		int64_t sid = -1;
		bool fin = false;
		if (s) {
			sid = s->id;
			nvec = stream_vecs(s, vec, MAX_VECS, &total);
			flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
			fin = s->fin_queued && !s->fin_sent && s->sent + total == s->written;
			if (fin) flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
		}
		ngtcp2_ssize ndata = -1;
		writing_conn = q; /* encrypt_cb: the ACK guard */
		ngtcp2_ssize n = ngtcp2_conn_writev_stream(q->conn, &ps.path, &pi, dest, destlen, &ndata, flags, sid, vec, nvec, ts);
		writing_conn = NULL;
		if (s && ndata >= 0) {
			s->sent += (uint64_t)ndata;
			q->unsent_total -= (uint64_t)ndata;
			if (fin && (uint64_t)ndata == total) s->fin_sent = true;
			if (!stream_pending(s)) sched_remove(q, s);
			else if (s->incremental && n != NGTCP2_ERR_WRITE_MORE && s->in_sched) {
				/* Round robin within the level: it had its share of this packet. */
				sched_remove(q, s);
				sched_add(q, s);
			}
		}
		if (n == NGTCP2_ERR_WRITE_MORE) {
			if (s) s->skip_epoch = q->epoch;
			continue;
		}
		if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED || n == NGTCP2_ERR_STREAM_SHUT_WR || n == NGTCP2_ERR_STREAM_NOT_FOUND) {
			if (s) {
				s->skip_epoch = q->epoch;
				if (n == NGTCP2_ERR_STREAM_SHUT_WR) peer_stopped(q, s, false, 0);
				if (n != NGTCP2_ERR_STREAM_DATA_BLOCKED) sched_remove(q, s);
			}
			continue;
		}
		return n;
	}
	return NGTCP2_ERR_INTERNAL;
}

/* Writes the CONNECTION_CLOSE (state ST_CLOSE_PENDING). Returns its length or 0. */
static size_t write_close(qconn_t *q, uint8_t *dest, size_t destlen) {
	ngtcp2_path_storage ps;
	ngtcp2_path_storage_zero(&ps);
	ngtcp2_pkt_info pi;
	ngtcp2_ssize n = ngtcp2_conn_write_connection_close(q->conn, &ps.path, &pi, q->close_pkt, sizeof q->close_pkt,
	                                                    &q->ccerr, now_ns());
	if (n <= 0) {
		/* Nothing can be sent (no keys yet, or already closing): done. */
		q->state = ST_CLOSED;
		return 0;
	}
	q->close_pkt_len = (size_t)n;
	enter_period(q, ST_CLOSING);
	if ((size_t)n > destlen) return 0;
	memcpy(dest, q->close_pkt, (size_t)n);
	return (size_t)n;
}

/* One packet into dest (at most MAX_UDP_PAYLOAD bytes); 0 when there is none. */
static size_t next_packet(qconn_t *q, uint8_t *dest, size_t destlen) {
	if (destlen > MAX_UDP_PAYLOAD) destlen = MAX_UDP_PAYLOAD;
	for (;;) {
		switch (q->state) {
		case ST_OPEN: {
			ngtcp2_ssize n = write_packet(q, dest, destlen, now_ns());
			if (n > 0) return (size_t)n;
			if (n == 0) return 0;
			set_local_error_liberr(q, (int)n);
			continue;
		}
		case ST_CLOSE_PENDING:
			return write_close(q, dest, destlen);
		case ST_CLOSING:
			if (q->resend_close && q->close_pkt_len <= destlen) {
				q->resend_close = false;
				memcpy(dest, q->close_pkt, q->close_pkt_len);
				return q->close_pkt_len;
			}
			return 0;
		default:
			return 0;
		}
	}
}

/* send(buf): [length, null] | null */
static napi_value conn_send_body(napi_env env, napi_callback_info info) {
	size_t argc = 1;
	napi_value argv[1];
	qconn_t *q = this_conn(env, info, &argc, argv);
	if (q == NULL) return NULL;
	uint8_t *dest;
	size_t destlen;
	if (!get_bytes(env, argv[0], &dest, &destlen)) return NULL;
	size_t n = next_packet(q, dest, destlen);
	if (n == 0) return js_null(env);
	q->pkts_sent++;
	q->bytes_sent += n;
	napi_value arr;
	CHECK(napi_create_array_with_length(env, 2, &arr));
	CHECK(napi_set_element(env, arr, 0, js_num(env, (double)n)));
	CHECK(napi_set_element(env, arr, 1, js_null(env)));
	return arr;
}

/*
 * sendBatch(buf, sizes: Uint16Array, max[, stride]): builds up to `max` packets into buf, their
 * lengths into sizes; returns the count. One crossing for a whole flush (connection.ts sendPackets).
 * Without a stride (or 0) the packets lie back to back; with one (>= 1350), packet k starts at
 * k * stride: the PacketSender's batch slots (src/quic/sender.ts), so each packet is written once,
 * where the UDP addon sends it from (GSO), and never copied.
 */
static napi_value conn_send_batch_body(napi_env env, napi_callback_info info) {
	qconn_t *q = this_conn(env, info, NULL, NULL);
	if (q == NULL) return NULL;
	size_t argc = 4;
	napi_value argv[4];
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3)
		return throw_msg(env, "sendBatch(buf, sizes, max[, stride])");
	uint8_t *buf;
	size_t buflen;
	if (!get_bytes(env, argv[0], &buf, &buflen)) return NULL;
	napi_typedarray_type type;
	void *sp;
	size_t nsizes;
	if (napi_get_typedarray_info(env, argv[1], &type, &nsizes, &sp, NULL, NULL) != napi_ok || type != napi_uint16_array)
		return throw_msg(env, "sizes: expected a Uint16Array");
	uint64_t max, stride = 0;
	if (!get_uint(env, argv[2], 1 << 20, &max)) return NULL;
	if (argc >= 4) {
		napi_valuetype t;
		if (napi_typeof(env, argv[3], &t) != napi_ok) return NULL;
		if (t != napi_undefined && !get_uint(env, argv[3], 1 << 16, &stride)) return NULL;
		if (stride != 0 && stride < MAX_UDP_PAYLOAD) return throw_msg(env, "stride: expected 0 or at least %d", MAX_UDP_PAYLOAD);
	}
	if (max > nsizes) max = nsizes;
	uint16_t *sizes = sp;
	size_t off = 0, count = 0;
	while (count < max && off <= buflen && buflen - off >= MAX_UDP_PAYLOAD) {
		size_t n = next_packet(q, buf + off, MAX_UDP_PAYLOAD);
		if (n == 0) break;
		sizes[count++] = (uint16_t)n;
		off += stride ? stride : n;
		q->pkts_sent++;
		q->bytes_sent += n;
	}
	return js_num(env, (double)count);
}

static napi_value conn_timeout(napi_env env, napi_callback_info info) {
	qconn_t *q = this_conn(env, info, NULL, NULL);
	if (q == NULL) return NULL;
	double ms = timeout_ms(q);
	return ms < 0 ? js_null(env) : js_num(env, ms);
}

REFRESHING(conn_send)
REFRESHING(conn_send_batch)
REFRESHING(conn_on_timeout)
REFRESHING(conn_close)

static napi_value conn_on_timeout_body(napi_env env, napi_callback_info info) {
	qconn_t *q = this_conn(env, info, NULL, NULL);
	if (q == NULL) return NULL;
	uint64_t now = now_ns();
	if (q->state == ST_CLOSING || q->state == ST_DRAINING) {
		if (now >= q->close_deadline) q->state = ST_CLOSED;
	} else if (q->state == ST_OPEN && ngtcp2_conn_get_expiry(q->conn) <= now) {
		int rv = ngtcp2_conn_handle_expiry(q->conn, now);
		if (rv == NGTCP2_ERR_IDLE_CLOSE) {
			q->timed_out = true;
			q->state = ST_CLOSED;
		} else if (rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
			q->state = ST_CLOSED;
		} else if (rv != 0) {
			set_local_error_liberr(q, rv);
		}
	}
	return js_undefined(env);
}

/* close(app, code, reason): undefined, or null when already closing */
static napi_value conn_close_body(napi_env env, napi_callback_info info) {
	size_t argc = 3;
	napi_value argv[3];
	qconn_t *q = this_conn(env, info, &argc, argv);
	if (q == NULL) return NULL;
	bool app = false;
	uint64_t code;
	uint8_t *reason;
	size_t reason_len;
	if (napi_get_value_bool(env, argv[0], &app) != napi_ok) return throw_msg(env, "app: expected a boolean");
	if (!get_uint(env, argv[1], (1ULL << 53), &code) || !get_bytes(env, argv[2], &reason, &reason_len)) return NULL;
	if (q->state != ST_OPEN && q->state != ST_NEW) return js_null(env);
	if (reason_len > MAX_REASON) reason_len = MAX_REASON;
	q->local_err.set = true;
	q->local_err.app = app;
	q->local_err.code = code;
	/* An empty Uint8Array may have no data pointer at all (memcpy from NULL is undefined, even for 0). */
	if (reason_len > 0) memcpy(q->local_err.reason, reason, reason_len);
	q->local_err.reason_len = reason_len;
	if (q->state == ST_NEW) {
		q->state = ST_CLOSED;
		return js_undefined(env);
	}
	moq_ccerr_default(&q->ccerr);
	if (app)
		moq_ccerr_set_application_error(&q->ccerr, code, q->local_err.reason, reason_len);
	else
		moq_ccerr_set_transport_error(&q->ccerr, code, q->local_err.reason, reason_len);
	q->state = ST_CLOSE_PENDING;
	return js_undefined(env);
}

static napi_value close_info_value(napi_env env, const close_info_t *e) {
	if (!e->set) return js_null(env);
	napi_value obj, reason;
	void *p;
	if (napi_create_object(env, &obj) != napi_ok ||
	    napi_create_buffer_copy(env, e->reason_len, e->reason_len ? e->reason : (const void *)"", &p, &reason) != napi_ok)
		return throw_pending_or(env, "cannot build the error");
	napi_set_named_property(env, obj, "isApp", js_bool(env, e->app));
	napi_set_named_property(env, obj, "errorCode", js_num(env, (double)e->code));
	napi_set_named_property(env, obj, "reason", reason);
	return obj;
}

static napi_value conn_peer_error(napi_env env, napi_callback_info info) {
	qconn_t *q = this_conn(env, info, NULL, NULL);
	return q ? close_info_value(env, &q->peer_err) : NULL;
}

static napi_value conn_local_error(napi_env env, napi_callback_info info) {
	qconn_t *q = this_conn(env, info, NULL, NULL);
	return q ? close_info_value(env, &q->local_err) : NULL;
}

static napi_value conn_is_established(napi_env env, napi_callback_info info) {
	qconn_t *q = this_conn(env, info, NULL, NULL);
	if (q == NULL) return NULL;
	return js_bool(env, q->conn != NULL && ngtcp2_conn_get_handshake_completed(q->conn));
}

static napi_value conn_is_draining(napi_env env, napi_callback_info info) {
	qconn_t *q = this_conn(env, info, NULL, NULL);
	if (q == NULL) return NULL;
	return js_bool(env, q->state == ST_CLOSING || q->state == ST_DRAINING || q->state == ST_CLOSED);
}

static napi_value conn_is_closed(napi_env env, napi_callback_info info) {
	qconn_t *q = this_conn(env, info, NULL, NULL);
	if (q == NULL) return NULL;
	return js_bool(env, q->state == ST_CLOSED || q->state == ST_REJECTED);
}

static napi_value conn_is_timed_out(napi_env env, napi_callback_info info) {
	qconn_t *q = this_conn(env, info, NULL, NULL);
	if (q == NULL) return NULL;
	return js_bool(env, q->timed_out);
}

static napi_value conn_application_proto(napi_env env, napi_callback_info info) {
	qconn_t *q = this_conn(env, info, NULL, NULL);
	if (q == NULL) return NULL;
	gnutls_datum_t a = {NULL, 0};
	if (q->tls == NULL || gnutls_alpn_get_selected_protocol(q->tls, &a) != 0) a.size = 0;
	napi_value out;
	void *p;
	CHECK(napi_create_buffer_copy(env, a.size, a.size ? a.data : (const void *)"", &p, &out));
	return out;
}

static napi_value conn_send_ack_eliciting(napi_env env, napi_callback_info info) {
	/* ngtcp2 sends its own keep-alive PINGs (set at creation from keepAliveMs). */
	qconn_t *q = this_conn(env, info, NULL, NULL);
	if (q == NULL) return NULL;
	return js_undefined(env);
}

static napi_value conn_streams_left(napi_env env, napi_callback_info info, bool bidi) {
	qconn_t *q = this_conn(env, info, NULL, NULL);
	if (q == NULL) return NULL;
	if (q->conn == NULL || q->state != ST_OPEN) return js_num(env, 0);
	return js_num(env, (double)(bidi ? ngtcp2_conn_get_streams_bidi_left(q->conn) : ngtcp2_conn_get_streams_uni_left(q->conn)));
}

static napi_value conn_peer_streams_left_bidi(napi_env env, napi_callback_info info) {
	return conn_streams_left(env, info, true);
}

static napi_value conn_peer_streams_left_uni(napi_env env, napi_callback_info info) {
	return conn_streams_left(env, info, false);
}

/*
 * Unsent bytes a connection holds beyond what its congestion window lets out now. quiche's
 * stream_capacity stops at the window, so a burst (a keyframe for every viewer) would wait in JS
 * queues and be pushed again, per stream, after every ACK; held here, ngtcp2 sends it as ACKs open
 * the window (by stream urgency), a fan-out write shared by all viewers stays one buffer, and JS
 * queues only what the peer's flow control refuses, or beyond this.
 */
#define UNSENT_AHEAD (1024 * 1024)

/* How much streamSend takes now: flow control, and the congestion window plus UNSENT_AHEAD. */
static uint64_t stream_cap(qconn_t *q, stream_t *s) {
	uint64_t unsent = s->written - s->sent;
	uint64_t left = ngtcp2_conn_get_max_stream_data_left(q->conn, s->id);
	uint64_t cap = left > unsent ? left - unsent : 0;
	uint64_t conn_left = ngtcp2_conn_get_max_data_left(q->conn);
	uint64_t c2 = conn_left > q->unsent_total ? conn_left - q->unsent_total : 0;
	if (c2 < cap) cap = c2;
	uint64_t room = ngtcp2_conn_get_cwnd_left(q->conn) + UNSENT_AHEAD;
	uint64_t c3 = room > q->unsent_total ? room - q->unsent_total : 0;
	if (c3 < cap) cap = c3;
	return cap;
}

/* A stream the app may write to, or NULL with an exception pending. */
static stream_t *send_stream(napi_env env, qconn_t *q, int64_t id, bool create) {
	if (q->conn == NULL || q->state != ST_OPEN) {
		napi_throw_error(env, NULL, "Done");
		return NULL;
	}
	stream_t *s = table_get(&q->streams, id);
	if (s == NULL && create && ngtcp2_conn_is_local_stream(q->conn, id)) {
		int64_t got = -1;
		int rv = ngtcp2_is_bidi_stream(id) ? ngtcp2_conn_open_bidi_stream(q->conn, &got, NULL)
		                                   : ngtcp2_conn_open_uni_stream(q->conn, &got, NULL);
		if (rv == NGTCP2_ERR_STREAM_ID_BLOCKED) {
			napi_throw_error(env, NULL, "StreamLimit");
			return NULL;
		}
		if (rv != 0) {
			throw_msg(env, "InvalidStreamState(%lld)", (long long)id);
			return NULL;
		}
		if (got != id) {
			/* Out of order: the app asked for another id than the next one. */
			moq_shutdown_stream(q->conn, got, 0);
			throw_msg(env, "InvalidStreamState(%lld)", (long long)id);
			return NULL;
		}
		s = stream_new(q, id);
		if (s == NULL) {
			napi_throw_error(env, NULL, "out of memory");
			return NULL;
		}
	}
	if (s == NULL || (!ngtcp2_is_bidi_stream(id) && !ngtcp2_conn_is_local_stream(q->conn, id))) {
		throw_msg(env, "InvalidStreamState(%lld)", (long long)id);
		return NULL;
	}
	if (s->stopped) {
		s->stop_seen = true;
		throw_msg(env, "StreamStopped(%llu)", (unsigned long long)s->stop_code);
		stream_maybe_free(q, s);
		return NULL;
	}
	if (s->ng_closed || s->write_shut) {
		throw_msg(env, "InvalidStreamState(%lld)", (long long)id);
		return NULL;
	}
	return s;
}

/* streamSend(id, data, fin): bytes taken, or null when none could be */
static napi_value conn_stream_send(napi_env env, napi_callback_info info) {
	size_t argc = 3;
	napi_value argv[3];
	qconn_t *q = this_conn(env, info, &argc, argv);
	if (q == NULL) return NULL;
	int64_t id;
	uint8_t *data;
	size_t len;
	bool fin = false;
	if (!get_stream_id(env, argv[0], &id) || !get_bytes(env, argv[1], &data, &len)) return NULL;
	if (napi_get_value_bool(env, argv[2], &fin) != napi_ok) return throw_msg(env, "fin: expected a boolean");
	stream_t *s = send_stream(env, q, id, true);
	if (s == NULL) return NULL;
	if (s->fin_queued) {
		if (len == 0 && fin) return js_num(env, 0);
		return throw_msg(env, "FinalSize");
	}
	uint64_t cap = stream_cap(q, s);
	size_t n = len < cap ? len : (size_t)cap;
	if (n == 0 && len > 0) return js_null(env);
	if (n > 0) {
		chunk_t *t = s->tail;
		size_t room = t ? t->cap - t->len : 0;
		size_t first = n < room ? n : room;
		if (first > 0) {
			memcpy(t->base + t->len, data, first);
			t->len += first;
			send_copied += (double)first;
		}
		if (n > first) {
			size_t rest = n - first;
			size_t cap2 = t && !t->shared ? t->cap * 2 : 2048;
			if (cap2 > 65536) cap2 = 65536;
			if (cap2 < rest) cap2 = rest;
			chunk_t *c = malloc(sizeof *c + cap2);
			if (c == NULL) {
				if (first == 0) return throw_msg(env, "out of memory");
				n = first;
			} else {
				c->next = NULL;
				c->off = s->written + first;
				c->cap = cap2;
				c->len = rest;
				c->base = c->data;
				c->shared = NULL;
				memcpy(c->data, data + first, rest);
				send_copied += (double)rest;
				send_held += (double)cap2;
				if (t) t->next = c;
				else s->head = c;
				s->tail = c;
			}
		}
		s->written += n;
		q->unsent_total += n;
	}
	if (fin && n == len) s->fin_queued = true;
	if (stream_pending(s)) sched_add(q, s);
	return js_num(env, (double)n);
}

/*
 * writeShared(slots: Int32Array, ids: Float64Array, count, data: Uint8Array, out: Float64Array):
 * `data` appended to stream ids[i] of connection slots[i], for i < count, as streamSend(ids[i], data,
 * false) would, in one call: the relay's fan-out of one frame to a worker's viewers. The bytes are
 * copied once, into a buffer every stream's chunk refers to. out[i]: the bytes stream i took (up to
 * its stream_cap; the caller queues the rest), or -1 when it took none because streamSend would
 * have thrown or the slot names no open connection (the caller then calls streamSend itself, which
 * reports why). Returns how many took all of `data`.
 */
static napi_value write_shared(napi_env env, napi_callback_info info) {
	size_t argc = 5;
	napi_value argv[5];
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
	if (argc < 5) return throw_msg(env, "writeShared(slots, ids, count, data, out): missing arguments");
	napi_typedarray_type type;
	size_t n_slots, n_ids, n_out, len;
	void *p_slots, *p_ids, *p_out;
	uint8_t *data;
	uint64_t count;
	if (napi_get_typedarray_info(env, argv[0], &type, &n_slots, &p_slots, NULL, NULL) != napi_ok ||
	    type != napi_int32_array)
		return throw_msg(env, "slots: expected an Int32Array");
	if (napi_get_typedarray_info(env, argv[1], &type, &n_ids, &p_ids, NULL, NULL) != napi_ok ||
	    type != napi_float64_array)
		return throw_msg(env, "ids: expected a Float64Array");
	if (!get_uint(env, argv[2], UINT32_MAX, &count) || !get_bytes(env, argv[3], &data, &len)) return NULL;
	if (napi_get_typedarray_info(env, argv[4], &type, &n_out, &p_out, NULL, NULL) != napi_ok ||
	    type != napi_float64_array)
		return throw_msg(env, "out: expected a Float64Array");
	if (count > n_slots || count > n_ids || count > n_out) return throw_msg(env, "count: beyond an array");
	instance_t *inst = instance(env);
	if (inst == NULL || inst->slots == NULL) return throw_msg(env, "no instance");
	slot_table_t *t = inst->slots;
	const int32_t *slots = p_slots;
	const double *ids = p_ids;
	double *out = p_out;
	shared_buf_t *buf = NULL;
	uint32_t whole = 0;
	for (size_t i = 0; i < count; i++) {
		out[i] = -1;
		int32_t slot = slots[i];
		double idd = ids[i];
		if (slot < 0 || (uint32_t)slot >= t->cap || !(idd >= 0) || idd > (double)((1ULL << 62) - 1)) continue;
		int64_t id = (int64_t)idd;
		if ((double)id != idd) continue;
		qconn_t *q = t->conns[slot];
		if (q == NULL || q->conn == NULL || q->state != ST_OPEN) continue;
		stream_t *s = table_get(&q->streams, id);
		if (s == NULL || s->stopped || s->ng_closed || s->write_shut || s->fin_queued) continue;
		if (!ngtcp2_is_bidi_stream(id) && !ngtcp2_conn_is_local_stream(q->conn, id)) continue;
		if (len == 0) {
			out[i] = 0;
			whole++;
			continue;
		}
		uint64_t cap = stream_cap(q, s);
		size_t n = len < cap ? len : (size_t)cap;
		if (n == 0) {
			out[i] = 0;
			continue;
		}
		if (buf == NULL) {
			buf = malloc(sizeof *buf + len);
			if (buf == NULL) break; /* out[i..] stay -1: streamSend reports it */
			buf->refs = 1; /* ours, dropped below */
			buf->len = len;
			memcpy(buf->data, data, len);
			send_copied += (double)len;
			send_held += (double)len;
		}
		chunk_t *c = malloc(sizeof *c);
		if (c == NULL) break;
		c->next = NULL;
		c->off = s->written;
		c->len = c->cap = n;
		c->base = buf->data;
		c->shared = buf;
		buf->refs++;
		if (s->tail) s->tail->next = c;
		else s->head = c;
		s->tail = c;
		s->written += n;
		q->unsent_total += n;
		if (stream_pending(s)) sched_add(q, s);
		out[i] = (double)n;
		if (n == len) whole++;
	}
	if (buf != NULL && --buf->refs == 0) {
		send_held -= (double)len;
		free(buf);
	}
	return js_num(env, whole);
}

/* sendBufferStats(): {copiedBytes, heldBytes} of this thread (see send_copied). */
static napi_value send_buffer_stats(napi_env env, napi_callback_info info) {
	(void)info;
	napi_value obj;
	if (napi_create_object(env, &obj) != napi_ok) return NULL;
	napi_value v;
	if (napi_create_double(env, send_copied, &v) != napi_ok || napi_set_named_property(env, obj, "copiedBytes", v) != napi_ok)
		return NULL;
	if (napi_create_double(env, send_held, &v) != napi_ok || napi_set_named_property(env, obj, "heldBytes", v) != napi_ok)
		return NULL;
	return obj;
}

static napi_value conn_stream_capacity(napi_env env, napi_callback_info info) {
	size_t argc = 1;
	napi_value argv[1];
	qconn_t *q = this_conn(env, info, &argc, argv);
	if (q == NULL) return NULL;
	int64_t id;
	if (!get_stream_id(env, argv[0], &id)) return NULL;
	stream_t *s = send_stream(env, q, id, false);
	if (s == NULL) return NULL;
	return js_num(env, (double)stream_cap(q, s));
}

/* streamPriority(id, urgency, incremental) */
static napi_value conn_stream_priority(napi_env env, napi_callback_info info) {
	size_t argc = 3;
	napi_value argv[3];
	qconn_t *q = this_conn(env, info, &argc, argv);
	if (q == NULL) return NULL;
	int64_t id;
	uint64_t urgency;
	bool incremental = true;
	if (!get_stream_id(env, argv[0], &id) || !get_uint(env, argv[1], 255, &urgency)) return NULL;
	if (napi_get_value_bool(env, argv[2], &incremental) != napi_ok) return throw_msg(env, "incremental: expected a boolean");
	stream_t *s = table_get(&q->streams, id);
	if (s == NULL) return throw_msg(env, "InvalidStreamState(%lld)", (long long)id);
	uint8_t level = urgency > 7 ? DEFAULT_URGENCY : (uint8_t)urgency;
	bool was = s->in_sched;
	sched_remove(q, s);
	s->urgency = level;
	s->incremental = incremental;
	if (was) {
		if (incremental) sched_add(q, s);
		else {
			/* Non-incremental goes first within its level (quiche sends it to completion). */
			s->prev = NULL;
			s->next = q->sched_head[level];
			if (s->next) s->next->prev = s;
			else q->sched_tail[level] = s;
			q->sched_head[level] = s;
			s->in_sched = true;
		}
	}
	return js_undefined(env);
}

static bool readable(const stream_t *s) {
	return s->has_recv && !s->recv_done && (s->rlen > 0 || s->rfin || s->reset);
}

static napi_value conn_stream_readable(napi_env env, napi_callback_info info) {
	size_t argc = 1;
	napi_value argv[1];
	qconn_t *q = this_conn(env, info, &argc, argv);
	if (q == NULL) return NULL;
	int64_t id;
	if (!get_stream_id(env, argv[0], &id)) return NULL;
	stream_t *s = table_get(&q->streams, id);
	return js_bool(env, s != NULL && readable(s));
}

static napi_value conn_readable(napi_env env, napi_callback_info info) {
	qconn_t *q = this_conn(env, info, NULL, NULL);
	if (q == NULL) return NULL;
	napi_value arr;
	CHECK(napi_create_array(env, &arr));
	uint32_t n = 0;
	for (size_t i = 0; i < q->streams.cap; i++) {
		stream_t *s = q->streams.slots[i];
		if (s && readable(s)) napi_set_element(env, arr, n++, js_num(env, (double)s->id));
	}
	return arr;
}

/* streamRecv(id, buf): [length, fin] | null; throws StreamReset(code) */
static napi_value conn_stream_recv(napi_env env, napi_callback_info info) {
	size_t argc = 2;
	napi_value argv[2];
	qconn_t *q = this_conn(env, info, &argc, argv);
	if (q == NULL) return NULL;
	int64_t id;
	uint8_t *buf;
	size_t cap;
	if (!get_stream_id(env, argv[0], &id) || !get_bytes(env, argv[1], &buf, &cap)) return NULL;
	stream_t *s = table_get(&q->streams, id);
	if (s == NULL || !s->has_recv || s->recv_done) return throw_msg(env, "InvalidStreamState(%lld)", (long long)id);
	if (s->reset) {
		s->recv_done = true;
		uint64_t code = s->reset_code;
		stream_maybe_free(q, s);
		return throw_msg(env, "StreamReset(%llu)", (unsigned long long)code);
	}
	if (s->rlen == 0 && !s->rfin) return js_null(env);
	size_t n = s->rlen < cap ? s->rlen : cap;
	if (n > 0) {
		memcpy(buf, s->rbuf + s->rhead, n);
		s->rhead += n;
		s->rlen -= n;
		if (s->rlen == 0) s->rhead = 0;
		if (q->conn && q->state == ST_OPEN) {
			if (!s->ng_closed) ngtcp2_conn_extend_max_stream_offset(q->conn, id, n);
			ngtcp2_conn_extend_max_offset(q->conn, n);
		}
	}
	bool fin = s->rfin && s->rlen == 0;
	napi_value arr;
	CHECK(napi_create_array_with_length(env, 2, &arr));
	CHECK(napi_set_element(env, arr, 0, js_num(env, (double)n)));
	CHECK(napi_set_element(env, arr, 1, js_bool(env, fin)));
	if (fin) {
		s->recv_done = true;
		free(s->rbuf);
		s->rbuf = NULL;
		s->rcap = 0;
		stream_maybe_free(q, s);
	}
	return arr;
}

/* streamShutdown(id, direction 0 = read / 1 = write, code) */
static napi_value conn_stream_shutdown(napi_env env, napi_callback_info info) {
	size_t argc = 3;
	napi_value argv[3];
	qconn_t *q = this_conn(env, info, &argc, argv);
	if (q == NULL) return NULL;
	int64_t id;
	uint64_t dir, code;
	if (!get_stream_id(env, argv[0], &id) || !get_uint(env, argv[1], 1, &dir) ||
	    !get_uint(env, argv[2], (1ULL << 53), &code))
		return NULL;
	stream_t *s = table_get(&q->streams, id);
	if (s == NULL || q->conn == NULL || q->state != ST_OPEN) return js_null(env);
	if (dir == 0) {
		if (!s->has_recv || s->recv_done) return js_null(env);
		s->recv_done = true;
		drop_recv(q, s);
		if (!s->ng_closed) moq_shutdown_stream_read(q->conn, id, code);
	} else {
		if (s->write_shut || s->stopped) return js_null(env);
		s->write_shut = true;
		sched_remove(q, s);
		if (!s->ng_closed) moq_shutdown_stream_write(q->conn, id, code);
	}
	stream_maybe_free(q, s);
	return js_undefined(env);
}

static void set_num(napi_env env, napi_value obj, const char *name, double v) {
	napi_set_named_property(env, obj, name, js_num(env, v));
}

static napi_value conn_stats(napi_env env, napi_callback_info info) {
	qconn_t *q = this_conn(env, info, NULL, NULL);
	if (q == NULL) return NULL;
	napi_value obj;
	CHECK(napi_create_object(env, &obj));
	/* What quiche's stats() also has, less its loss counts: ngtcp2 0.12 keeps none per connection
	 * (only per live stream), and a constant 0 would read as "no loss". */
	set_num(env, obj, "recv", (double)q->pkts_recv);
	set_num(env, obj, "sent", (double)q->pkts_sent);
	set_num(env, obj, "sentBytes", (double)q->bytes_sent);
	set_num(env, obj, "recvBytes", (double)q->bytes_recv);
	set_num(env, obj, "pathsCount", 1);
	set_num(env, obj, "engineHeapBytes", (double)q->engine_heap);
	return obj;
}

static napi_value conn_path_stats(napi_env env, napi_callback_info info) {
	qconn_t *q = this_conn(env, info, NULL, NULL);
	if (q == NULL) return NULL;
	napi_value arr, obj;
	CHECK(napi_create_array(env, &arr));
	if (q->conn == NULL) return arr;
	moq_conn_info cs;
	moq_conn_get_info(q->conn, &cs);
	CHECK(napi_create_object(env, &obj));
	napi_set_named_property(env, obj, "active", js_bool(env, true));
	set_num(env, obj, "rtt", (double)cs.smoothed_rtt / 1e6);
	set_num(env, obj, "minRtt", (double)cs.min_rtt / 1e6);
	set_num(env, obj, "cwnd", (double)cs.cwnd);
	set_num(env, obj, "bytesInFlight", (double)cs.bytes_in_flight);
	set_num(env, obj, "recv", (double)q->pkts_recv);
	set_num(env, obj, "sent", (double)q->pkts_sent);
	set_num(env, obj, "sentBytes", (double)q->bytes_sent);
	set_num(env, obj, "recvBytes", (double)q->bytes_recv);
	set_num(env, obj, "pmtu", (double)ngtcp2_conn_get_path_max_tx_udp_payload_size(q->conn));
#if !MOQ_NGTCP2_1X
	set_num(env, obj, "deliveryRate", (double)cs.delivery_rate_sec); /* 1.x keeps it internal */
#endif
	napi_set_element(env, arr, 0, obj);
	return arr;
}

/* extraScids(): the connection IDs ngtcp2 will issue beyond the first (route them to this connection). */
static napi_value conn_extra_scids(napi_env env, napi_callback_info info) {
	qconn_t *q = this_conn(env, info, NULL, NULL);
	if (q == NULL) return NULL;
	napi_value arr;
	CHECK(napi_create_array_with_length(env, EXTRA_CIDS, &arr));
	for (uint32_t i = 0; i < EXTRA_CIDS; i++) {
		napi_value b;
		void *p;
		CHECK(napi_create_buffer_copy(env, q->scid_len, q->extra[i], &p, &b));
		napi_set_element(env, arr, i, b);
	}
	return arr;
}

/* ---- stateless packets ------------------------------------------------------------------------ */

static napi_value version_is_supported(napi_env env, napi_callback_info info) {
	size_t argc = 1;
	napi_value argv[1];
	CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	uint64_t v;
	if (argc < 1 || !get_uint(env, argv[0], UINT32_MAX, &v)) return throw_pending_or(env, "version: expected a number");
	return js_bool(env, v == NGTCP2_PROTO_VER_V1);
}

/* negotiateVersion(scid, dcid, out): the client's IDs as received; returns the length written. */
static napi_value negotiate_version(napi_env env, napi_callback_info info) {
	size_t argc = 3;
	napi_value argv[3];
	CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	if (argc < 3) return throw_msg(env, "negotiateVersion(scid, dcid, out)");
	uint8_t *scid, *dcid, *out;
	size_t scid_len, dcid_len, out_len;
	if (!get_bytes(env, argv[0], &scid, &scid_len) || !get_bytes(env, argv[1], &dcid, &dcid_len) ||
	    !get_bytes(env, argv[2], &out, &out_len))
		return NULL;
	if (scid_len > 255 || dcid_len > 255) return throw_msg(env, "connection ID too long");
	uint8_t r;
	gnutls_rnd(GNUTLS_RND_NONCE, &r, 1);
	const uint32_t versions[] = {NGTCP2_PROTO_VER_V1, 0x1a2a3a4a /* a reserved (greasing) version */};
	ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(out, out_len, r, scid, scid_len, dcid, dcid_len, versions, 2);
	if (n < 0) return throw_msg(env, "BufferTooShort");
	return js_num(env, (double)n);
}

/* retry(scid, dcid, newScid, token, version, out): the client's IDs as received; returns the length. */
static napi_value retry(napi_env env, napi_callback_info info) {
	size_t argc = 6;
	napi_value argv[6];
	CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	if (argc < 6) return throw_msg(env, "retry(scid, dcid, newScid, token, version, out)");
	uint8_t *scid, *dcid, *nscid, *token, *out;
	size_t scid_len, dcid_len, nscid_len, token_len, out_len;
	uint64_t version;
	if (!get_bytes(env, argv[0], &scid, &scid_len) || !get_bytes(env, argv[1], &dcid, &dcid_len) ||
	    !get_bytes(env, argv[2], &nscid, &nscid_len) || !get_bytes(env, argv[3], &token, &token_len) ||
	    !get_uint(env, argv[4], UINT32_MAX, &version) || !get_bytes(env, argv[5], &out, &out_len))
		return NULL;
	if (scid_len > NGTCP2_MAX_CIDLEN || dcid_len > NGTCP2_MAX_CIDLEN || nscid_len > NGTCP2_MAX_CIDLEN)
		return throw_msg(env, "connection ID too long");
	/* Both would trip libngtcp2 assertions (an abort, not an error). */
	if (token_len == 0) return throw_msg(env, "retry: empty token");
	if (nscid_len == dcid_len && memcmp(nscid, dcid, dcid_len) == 0)
		return throw_msg(env, "retry: the new connection ID equals the client's");
	ngtcp2_cid c_dcid, c_scid, c_odcid;
	ngtcp2_cid_init(&c_dcid, scid, scid_len);
	ngtcp2_cid_init(&c_scid, nscid, nscid_len);
	ngtcp2_cid_init(&c_odcid, dcid, dcid_len);
	ngtcp2_ssize n = ngtcp2_crypto_write_retry(out, out_len, (uint32_t)version, &c_dcid, &c_scid, &c_odcid, token, token_len);
	if (n < 0) return throw_msg(env, "retry: cannot write the packet");
	return js_num(env, (double)n);
}

/* ---- module ----------------------------------------------------------------------------------- */

static void free_instance(napi_env env, void *data, void *hint) {
	(void)hint;
	instance_t *inst = data;
	if (inst->config_ctor) napi_delete_reference(env, inst->config_ctor);
	if (inst->conn_ctor) napi_delete_reference(env, inst->conn_ctor);
	slots_unref(inst->slots);
	free(inst);
}

#define METHOD(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_default_method, NULL}
#define STATIC(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_static, NULL}

NAPI_MODULE_INIT() {
	if (gnutls_check_version("3.7.0") == NULL) {
		napi_throw_error(env, NULL, "ngtcp2 addon: GnuTLS 3.7 or later is required");
		return NULL;
	}
	moq_ngtcp2_stderr = stderr;
	instance_t *inst = calloc(1, sizeof *inst);
	if (inst == NULL) return throw_pending_or(env, "out of memory");
	inst->slots = calloc(1, sizeof *inst->slots);
	if (inst->slots == NULL) {
		free(inst);
		return throw_pending_or(env, "out of memory");
	}
	inst->slots->refs = 1;
	inst->slots->next_free = UINT32_MAX;
	if (napi_set_instance_data(env, inst, free_instance, NULL) != napi_ok) {
		slots_unref(inst->slots);
		free(inst);
		return throw_pending_or(env, "ngtcp2 addon: napi_set_instance_data failed");
	}
	napi_property_descriptor conn_props[] = {
		STATIC("accept", conn_accept),
		METHOD("recv", conn_recv),
		METHOD("send", conn_send),
		METHOD("sendBatch", conn_send_batch),
		METHOD("timeout", conn_timeout),
		METHOD("onTimeout", conn_on_timeout),
		METHOD("close", conn_close),
		METHOD("peerError", conn_peer_error),
		METHOD("localError", conn_local_error),
		METHOD("isEstablished", conn_is_established),
		METHOD("isDraining", conn_is_draining),
		METHOD("isClosed", conn_is_closed),
		METHOD("isTimedOut", conn_is_timed_out),
		METHOD("applicationProto", conn_application_proto),
		METHOD("sendAckEliciting", conn_send_ack_eliciting),
		METHOD("peerStreamsLeftBidi", conn_peer_streams_left_bidi),
		METHOD("peerStreamsLeftUni", conn_peer_streams_left_uni),
		METHOD("streamSend", conn_stream_send),
		METHOD("streamCapacity", conn_stream_capacity),
		METHOD("streamPriority", conn_stream_priority),
		METHOD("streamReadable", conn_stream_readable),
		METHOD("readable", conn_readable),
		METHOD("streamRecv", conn_stream_recv),
		METHOD("streamShutdown", conn_stream_shutdown),
		METHOD("stats", conn_stats),
		METHOD("pathStats", conn_path_stats),
		METHOD("extraScids", conn_extra_scids),
		METHOD("enableFastRecv", conn_enable_fast_recv),
	};
	napi_value conn_class, config_class, v;
	CHECK(napi_define_class(env, "Connection", NAPI_AUTO_LENGTH, conn_ctor, NULL,
	                        sizeof conn_props / sizeof conn_props[0], conn_props, &conn_class));
	CHECK(napi_define_class(env, "Config", NAPI_AUTO_LENGTH, config_new, NULL, 0, NULL, &config_class));
	CHECK(napi_create_reference(env, conn_class, 1, &inst->conn_ctor));
	CHECK(napi_create_reference(env, config_class, 1, &inst->config_ctor));
	CHECK(napi_set_named_property(env, exports, "Connection", conn_class));
	CHECK(napi_set_named_property(env, exports, "Config", config_class));
	napi_property_descriptor fns[] = {
		{"versionIsSupported", NULL, version_is_supported, NULL, NULL, NULL, napi_enumerable, NULL},
		{"negotiateVersion", NULL, negotiate_version, NULL, NULL, NULL, napi_enumerable, NULL},
		{"retry", NULL, retry, NULL, NULL, NULL, napi_enumerable, NULL},
		{"writeShared", NULL, write_shared, NULL, NULL, NULL, napi_enumerable, NULL},
		{"sendBufferStats", NULL, send_buffer_stats, NULL, NULL, NULL, napi_enumerable, NULL},
		{"recvMany", NULL, recv_many, NULL, NULL, NULL, napi_enumerable, NULL},
	};
	CHECK(napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns));
	CHECK(napi_create_uint32(env, ABI_VERSION, &v));
	CHECK(napi_set_named_property(env, exports, "abiVersion", v));
	const ngtcp2_info *ni = ngtcp2_version(0);
	CHECK(napi_create_string_utf8(env, ni ? ni->version_str : "?", NAPI_AUTO_LENGTH, &v));
	CHECK(napi_set_named_property(env, exports, "ngtcp2Version", v));
	CHECK(napi_create_string_utf8(env, gnutls_check_version(NULL), NAPI_AUTO_LENGTH, &v));
	CHECK(napi_set_named_property(env, exports, "gnutlsVersion", v));
	return exports;
}
