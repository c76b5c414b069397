/*
 * moq-loadgen: the bench's native load generator. Many moq-lite-05 subscribers over raw QUIC
 * (libngtcp2 0.12 or 1.x + GnuTLS), one UDP socket and one QUIC connection each, in one single-threaded
 * process. Each subscriber records publish → receive latency per frame, counts incomplete groups and
 * the datagrams the relay sends it, exactly like bench/lib/generator-child.ts, at a small fraction of
 * its CPU per packet: the JS generator costs about as much per received packet as the relay does per
 * sent one, so on a 2-core machine it, not the relay, set the capacity a sweep could measure.
 *
 *   moq-loadgen HOST PORT PATH SHA256_HEX
 *   moq-loadgen --raw HOST PORT - SHA256_HEX
 *
 * --raw: plain QUIC readers for the bench's bare pump (bench/pump.ts): no moq-lite, each connection
 * reads whatever streams the server opens and counts the bytes, with the same ACK behaviour, so the
 * relay and the pump it is compared with face the same clients.
 *
 * Control on stdin, one command per line; answers on stdout, one line each:
 *   add N    → "added TOTAL FAILED"   (N more subscribers, answered when each is receiving or failed)
 *   reset    → "reset"                (start a measuring window)
 *   report   → "report {json}"        (the window's counts, latency histogram and this process's CPU)
 *   stop     → closes every connection and exits
 * Errors go to stderr. The relay's certificate is pinned to SHA256_HEX (the bench reads it from the
 * relay's /certificate.sha256), as the JS generator pins it.
 *
 * Receiving: one datagram per slot of a recvmmsg batch. With MOQ_LOADGEN_GRO=1 each socket sets
 * UDP_GRO, so a sender's GSO train arrives as one buffer that the generator cuts at the segment size
 * the kernel reports (cmsg UDP_GRO), as quinn-based clients receive. On loopback the receiving
 * socket's kernel work runs in the sender's softirq and is charged to the relay's CPU: per datagram
 * without GRO (each segment cut and queued on its own), per train with it. Off by default: the
 * bench's baselines are without it. Packets are counted per segment either way.
 *
 * Latency is taken twice for every frame, from the same publisher stamp:
 * - at the datagram's arrival: the kernel's receive timestamp (SO_TIMESTAMPNS) of the datagram that
 *   completed the frame. That is when the relay's packet reached this host, whatever this process
 *   had queued before it: the relay's delivery latency, as a viewer on its own machine would see it;
 * - when this process has read it: the arrival plus the time the datagram waited in the socket
 *   while this process read the ones before it. Hundreds of subscribers share one core here, so a
 *   keyframe for all of them (70 packets each at 2.5 Mbit/s) queues behind the others' for longer
 *   than the relay takes to send it: this half measures the generator as much as the relay.
 * The report carries both histograms ("histogram": read, "arrivalHistogram": arrival).
 *
 * ACKs: every second ack-eliciting packet (ngtcp2's default, RFC 9000 §13.2.2), or every Nth with
 * MOQ_LOADGEN_ACK_EVERY=N (2–1000; the others wait for the 25 ms max_ack_delay at most), to measure
 * what a less chatty client (ACK decimation, as some browser stacks do) costs the relay. The bench's
 * baselines use the default.
 *
 * The frame payload starts with the bench header (bench/lib/payload.ts): f64 send time in ms on the
 * monotonic clock (CLOCK_MONOTONIC, which Node's process.hrtime also reads), u32 group sequence,
 * u32 frame index, u32 frames in the group, all little-endian. A frame's latency is taken when its
 * last byte arrives, as the JS client reports a frame when it is complete.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <inttypes.h>
#include <netdb.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ALPN "moq-lite-05"
#define PRIORITY "%DISABLE_TLS13_COMPAT_MODE:NORMAL:-VERS-ALL:+VERS-TLS1.3"
#define MAX_PACKET 1500
#define RECV_BATCH 32
#ifndef UDP_GRO
#define UDP_GRO 104 /* linux/udp.h, since Linux 5.0 */
#endif
/** A GRO buffer holds a whole train: at most 64 segments of at most MAX_PACKET (UDP caps it at 64 KiB). */
#define GRO_BUFFER 65536
/** Handshakes (and subscriptions not yet receiving) in flight at once while adding subscribers. */
#define MAX_PENDING 16
/** A refused subscription (the broadcast is not announced yet) is retried every 100 ms, 100 times. */
#define RETRY_NS 100000000ull
#define MAX_ATTEMPTS 100
/** A subscriber that is not receiving this long after it was added has failed. */
#define ADD_DEADLINE_NS 30000000000ull
#define MAX_OUT 112
#define HEADER_BYTES 20

/* Latency histogram in µs: exact below 256, then 128 linear sub-buckets per power of two (< 0.8 %
 * error), up to 2^40 µs. The parent turns the buckets back into an HDR histogram. */
#define HIST_BUCKETS (256 + 34 * 128)

enum { CONNECTING, SUBSCRIBING, RECEIVING, ENDED, FAILED };
enum { ST_TYPE, ST_GROUP_LEN, ST_SKIP_GROUP, ST_FRAME_TS, ST_FRAME_SIZE, ST_PAYLOAD, ST_REPLY_LEN, ST_SKIP_REPLY, ST_DISCARD };

typedef struct viewer viewer;

/** Parse state of one incoming stream: a group stream, or our subscribe stream's replies. */
typedef struct {
	viewer *v;
	int subscribe; /* our bidi subscribe stream (replies), else a uni stream from the relay */
	int state;
	uint8_t varint[8];
	uint8_t have, need;
	uint64_t reply_type, skip, left, size;
	uint8_t header[HEADER_BYTES];
	uint8_t header_have;
} rstream;

/** One outgoing message: ngtcp2 keeps pointing into `bytes` until they are acknowledged. */
typedef struct {
	int64_t sid;
	size_t len, off;
	int fin, done;
	uint8_t bytes[96];
} outmsg;

struct viewer {
	int fd;
	ngtcp2_conn *conn;
	gnutls_session_t tls;
	ngtcp2_crypto_conn_ref ref;
	struct sockaddr_storage local, peer;
	socklen_t local_len, peer_len;
	int state, attempts, counted;
	uint64_t added_at, retry_at, next_subscribe_id;
	rstream *sub;
	outmsg *out[MAX_OUT];
	int nout;
	int64_t group;
	uint32_t received, expected, frames_in_window;
	uint8_t cid[18];
};

static const char *host, *port, *session_path;
static int raw;
static uint8_t pin[32];
static gnutls_certificate_credentials_t credentials;
static int ep;
static viewer **viewers;
static size_t nviewers, cap_viewers;

/* The window's counts (reset by "reset"). */
static int measuring;
static uint64_t hist[HIST_BUCKETS];
static uint64_t hist_arrival[HIST_BUCKETS];
/* The kernel's receive time of the datagram being read (CLOCK_MONOTONIC ns), or 0 when the kernel
 * gave none: frame_done then counts the read time for both histograms. */
static uint64_t arrival_ns;
static uint64_t frames, bytes, groups_complete, groups_lost, failures, packets_in;
/* ngtcp2_settings.ack_thresh: acknowledge every this many ack-eliciting packets (MOQ_LOADGEN_ACK_EVERY). */
static size_t ack_every = 2;
/* MOQ_LOADGEN_GRO=1: receive with UDP_GRO (whole GSO trains per buffer). */
static int gro;
static uint64_t window_start_ns, cpu_start_us;
/* Adding: how many are still to be started, and how many of this batch have failed. */
static long to_start, add_pending_total, add_failed;

static uint64_t now_ns(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static uint64_t cpu_us(void) {
	struct rusage r;
	getrusage(RUSAGE_SELF, &r);
	return (uint64_t)r.ru_utime.tv_sec * 1000000ull + (uint64_t)r.ru_utime.tv_usec + (uint64_t)r.ru_stime.tv_sec * 1000000ull +
	       (uint64_t)r.ru_stime.tv_usec;
}

static void die(const char *what) {
	fprintf(stderr, "moq-loadgen: %s\n", what);
	exit(1);
}

static int bucket_of(uint64_t us) {
	if (us < 256) return (int)us;
	int msb = 63 - __builtin_clzll(us);
	if (msb > 40) return HIST_BUCKETS - 1;
	int shift = msb - 7;
	return 256 + (shift - 1) * 128 + (int)((us >> shift) - 128);
}

/** The middle of a bucket, in µs. */
static uint64_t bucket_value(int i) {
	if (i < 256) return (uint64_t)i;
	int shift = (i - 256) / 128 + 1;
	uint64_t low = (uint64_t)((i - 256) % 128 + 128) << shift;
	return low + ((1ull << shift) >> 1);
}

/* --- ngtcp2 callbacks ------------------------------------------------------------------------- */

static void rand_bytes(uint8_t *p, size_t n) {
	if (gnutls_rnd(GNUTLS_RND_NONCE, p, n) != 0) die("gnutls_rnd failed");
}

static void rand_cb(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx) {
	(void)ctx;
	rand_bytes(dest, len);
}

static int new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t len, void *user) {
	(void)conn;
	(void)user;
	rand_bytes(cid->data, len);
	cid->datalen = len;
	rand_bytes(token, NGTCP2_STATELESS_RESET_TOKENLEN);
	return 0;
}

static ngtcp2_conn *conn_of(ngtcp2_crypto_conn_ref *ref) { return ((viewer *)ref->user_data)->conn; }

static outmsg *queue_message(viewer *v, int64_t sid) {
	if (v->nout == MAX_OUT) return NULL;
	outmsg *m = calloc(1, sizeof *m);
	if (m == NULL) die("out of memory");
	m->sid = sid;
	v->out[v->nout++] = m;
	return m;
}

static size_t put_varint(uint8_t *p, uint64_t x) {
	if (x < 64) {
		p[0] = (uint8_t)x;
		return 1;
	}
	if (x < 16384) {
		p[0] = (uint8_t)(0x40 | (x >> 8));
		p[1] = (uint8_t)x;
		return 2;
	}
	p[0] = (uint8_t)(0x80 | (x >> 24));
	p[1] = (uint8_t)(x >> 16);
	p[2] = (uint8_t)(x >> 8);
	p[3] = (uint8_t)x;
	return 4;
}

static size_t put_string(uint8_t *p, const char *s) {
	size_t n = strlen(s), k = put_varint(p, n);
	memcpy(p + k, s, n);
	return k + n;
}

/** Opens a subscribe stream: type 2, then SUBSCRIBE (id, broadcast "live", track "video", priority 1,
 * ordered 0, max latency 0, start latest, end unbounded). */
static int subscribe(viewer *v) {
	int64_t sid;
	if (ngtcp2_conn_open_bidi_stream(v->conn, &sid, NULL) != 0) return -1;
	outmsg *m = queue_message(v, sid);
	if (m == NULL) return -1;
	uint8_t body[64];
	size_t n = 0;
	n += put_varint(body + n, v->next_subscribe_id++);
	n += put_string(body + n, "live");
	n += put_string(body + n, "video");
	body[n++] = 1;
	body[n++] = 0;
	n += put_varint(body + n, 0);
	n += put_varint(body + n, 0);
	n += put_varint(body + n, 0);
	m->bytes[m->len++] = 2;
	m->len += put_varint(m->bytes + m->len, n);
	memcpy(m->bytes + m->len, body, n);
	m->len += n;
	/* The previous attempt's parse state (if any) is freed by its stream's close. */
	rstream *s = calloc(1, sizeof *s);
	if (s == NULL) die("out of memory");
	s->v = v;
	s->subscribe = 1;
	ngtcp2_conn_set_stream_user_data(v->conn, sid, s);
	v->sub = s;
	v->state = SUBSCRIBING;
	v->attempts++;
	return 0;
}

static void fail(viewer *v) {
	if (v->state == FAILED) return;
	if (!v->counted) {
		v->counted = 1;
		to_start--;
		add_failed++;
	} else if (measuring) {
		failures++;
	}
	v->state = FAILED;
}

static void subscribe_ok(viewer *v);

static int handshake_completed_cb(ngtcp2_conn *conn, void *user) {
	viewer *v = user;
	/* Pin the relay's certificate. */
	unsigned int count = 0;
	const gnutls_datum_t *certs = gnutls_certificate_get_peers(v->tls, &count);
	uint8_t digest[32];
	if (certs == NULL || count == 0 || gnutls_hash_fast(GNUTLS_DIG_SHA256, certs[0].data, certs[0].size, digest) != 0 ||
	    memcmp(digest, pin, sizeof pin) != 0) {
		fprintf(stderr, "moq-loadgen: the relay's certificate does not match the pinned SHA-256\n");
		fail(v);
		return NGTCP2_ERR_CALLBACK_FAILURE;
	}
	if (raw) {
		v->state = SUBSCRIBING;
		subscribe_ok(v);
		return 0;
	}
	/* SETUP on a uni stream: type 1, then (params) Path and Role = subscriber, then FIN. */
	int64_t sid;
	if (ngtcp2_conn_open_uni_stream(conn, &sid, NULL) != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
	outmsg *m = queue_message(v, sid);
	uint8_t body[80];
	size_t n = 0;
	body[n++] = 2; /* params */
	body[n++] = 2; /* Path */
	size_t plen = strlen(session_path);
	if (plen > 48) die("session path too long");
	n += put_varint(body + n, plen);
	memcpy(body + n, session_path, plen);
	n += plen;
	body[n++] = 3; /* Role: a varint param is length-prefixed */
	body[n++] = 1;
	body[n++] = 2; /* subscriber */
	m->fin = 1; /* SETUP is the stream's only message; the subscribe stream stays open (a FIN there unsubscribes) */
	m->bytes[m->len++] = 1;
	m->len += put_varint(m->bytes + m->len, n);
	memcpy(m->bytes + m->len, body, n);
	m->len += n;
	if (subscribe(v) != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
	return 0;
}

/** Group accounting from the frame header, as generator-child.ts's Viewer.track. */
static void track(viewer *v, uint32_t group, uint32_t count) {
	if ((int64_t)group != v->group) {
		if ((int64_t)group < v->group) return; /* a late frame of an older group: already accounted */
		if (measuring && v->group >= 0) {
			if (v->received < v->expected) groups_lost++;
			else groups_complete++;
			if ((int64_t)group > v->group + 1) groups_lost += (uint64_t)((int64_t)group - v->group - 1);
		}
		v->group = group;
		v->received = 0;
		v->expected = count;
	}
	v->received++;
}

static void frame_done(rstream *s) {
	if (s->header_have < HEADER_BYTES) return;
	viewer *v = s->v;
	double sent;
	uint32_t group, count;
	memcpy(&sent, s->header, 8);
	memcpy(&group, s->header + 8, 4);
	memcpy(&count, s->header + 16, 4);
	if (measuring) {
		uint64_t read_ns = now_ns();
		double ms = (double)read_ns / 1e6 - sent;
		int64_t us = (int64_t)(ms * 1000 + 0.5);
		hist[bucket_of(us > 0 ? (uint64_t)us : 1)]++;
		/* A receive stamp after the read time (clock adjustments) is taken as the read time. */
		uint64_t at = arrival_ns != 0 && arrival_ns <= read_ns ? arrival_ns : read_ns;
		double arrival_ms = (double)at / 1e6 - sent;
		int64_t arrival_us = (int64_t)(arrival_ms * 1000 + 0.5);
		hist_arrival[bucket_of(arrival_us > 0 ? (uint64_t)arrival_us : 1)]++;
		frames++;
		bytes += s->size;
		v->frames_in_window++;
	}
	track(v, group, count);
}

static void subscribe_ok(viewer *v) {
	if (v->state != SUBSCRIBING) return;
	v->state = RECEIVING;
	if (!v->counted) {
		v->counted = 1;
		to_start--;
	}
}

/** Reads one varint across calls; returns 1 with *out set when complete. */
static int feed_varint(rstream *s, const uint8_t **data, size_t *len, uint64_t *out) {
	while (*len > 0) {
		uint8_t b = **data;
		if (s->have == 0) s->need = (uint8_t)(1u << (b >> 6));
		s->varint[s->have++] = b;
		(*data)++;
		(*len)--;
		if (s->have == s->need) {
			uint64_t x = s->varint[0] & 0x3f;
			for (int i = 1; i < s->need; i++) x = (x << 8) | s->varint[i];
			s->have = 0;
			*out = x;
			return 1;
		}
	}
	return 0;
}

static void parse(rstream *s, const uint8_t *data, size_t len) {
	uint64_t x;
	while (len > 0) {
		switch (s->state) {
		case ST_TYPE:
			if (!feed_varint(s, &data, &len, &x)) return;
			if (s->subscribe) {
				s->reply_type = x;
				s->state = ST_REPLY_LEN;
			} else {
				s->state = x == 0 ? ST_GROUP_LEN : ST_DISCARD; /* 0 group; 1 SETUP and the rest: ignored */
			}
			break;
		case ST_GROUP_LEN:
			if (!feed_varint(s, &data, &len, &x)) return;
			s->skip = x;
			s->state = ST_SKIP_GROUP;
			break;
		case ST_SKIP_GROUP:
		case ST_SKIP_REPLY: {
			size_t take = s->skip < len ? (size_t)s->skip : len;
			s->skip -= take;
			data += take;
			len -= take;
			if (s->skip == 0) s->state = s->state == ST_SKIP_GROUP ? ST_FRAME_TS : ST_TYPE;
			break;
		}
		case ST_FRAME_TS:
			if (!feed_varint(s, &data, &len, &x)) return;
			s->state = ST_FRAME_SIZE;
			break;
		case ST_FRAME_SIZE:
			if (!feed_varint(s, &data, &len, &x)) return;
			s->size = s->left = x;
			s->header_have = 0;
			if (x == 0) {
				frame_done(s);
				s->state = ST_FRAME_TS;
			} else {
				s->state = ST_PAYLOAD;
			}
			break;
		case ST_PAYLOAD: {
			size_t take = s->left < len ? (size_t)s->left : len;
			if (s->header_have < HEADER_BYTES) {
				size_t h = HEADER_BYTES - s->header_have;
				if (h > take) h = take;
				memcpy(s->header + s->header_have, data, h);
				s->header_have += (uint8_t)h;
			}
			s->left -= take;
			data += take;
			len -= take;
			if (s->left == 0) {
				frame_done(s);
				s->state = ST_FRAME_TS;
			}
			break;
		}
		case ST_REPLY_LEN:
			if (!feed_varint(s, &data, &len, &x)) return;
			if (s->reply_type == 0) subscribe_ok(s->v); /* SUBSCRIBE_OK: the first group is being served */
			s->skip = x;
			s->state = ST_SKIP_REPLY;
			if (x == 0) s->state = ST_TYPE;
			break;
		default:
			return;
		}
	}
}

static int recv_stream_data_cb(ngtcp2_conn *conn, uint32_t flags, int64_t sid, uint64_t offset, const uint8_t *data,
                               size_t len, void *user, void *stream_user) {
	(void)offset;
	rstream *s = stream_user;
	if (raw) {
		if (measuring) {
			bytes += len;
			((viewer *)user)->frames_in_window += len > 0;
		}
	} else if (s != NULL) {
		parse(s, data, len);
	}
	ngtcp2_conn_extend_max_stream_offset(conn, sid, len);
	ngtcp2_conn_extend_max_offset(conn, len);
	if ((flags & NGTCP2_STREAM_DATA_FLAG_FIN) && (sid & 3) == 3) {
		/* A relay's group stream ended. ngtcp2 0.12 never closes a peer's uni stream (its close
		 * condition wants our send side acknowledged, which a receive-only stream never is), and
		 * neither version grants the peer a new one by itself: the credit is granted here. */
		if (s != NULL) {
			ngtcp2_conn_set_stream_user_data(conn, sid, NULL);
			free(s);
		}
		ngtcp2_conn_extend_max_streams_uni(conn, 1);
	}
	return 0;
}

static int stream_open_cb(ngtcp2_conn *conn, int64_t sid, void *user) {
	if (raw || (sid & 3) != 3) return 0; /* a bidi stream the relay opened: not used by a subscriber, ignored */
	rstream *s = calloc(1, sizeof *s);
	if (s == NULL) die("out of memory");
	s->v = user;
	ngtcp2_conn_set_stream_user_data(conn, sid, s);
	return 0;
}

static void subscription_ended(viewer *v, rstream *s) {
	if (v->sub != s) return;
	v->sub = NULL;
	if (v->state == SUBSCRIBING) {
		/* Refused (reset) before it started: the broadcast may not be announced yet. */
		if (v->attempts < MAX_ATTEMPTS) v->retry_at = now_ns() + RETRY_NS;
		else fail(v);
	} else if (v->state == RECEIVING) {
		v->state = ENDED;
		if (measuring) failures++;
	}
}

static int stream_reset_cb(ngtcp2_conn *conn, int64_t sid, uint64_t final_size, uint64_t code, void *user, void *stream_user) {
	(void)final_size;
	(void)code;
	rstream *s = stream_user;
	if (s == NULL) return 0;
	if (s->subscribe) {
		subscription_ended(user, s);
		return 0;
	}
	ngtcp2_conn_set_stream_user_data(conn, sid, NULL);
	free(s);
	if ((sid & 3) == 3) ngtcp2_conn_extend_max_streams_uni(conn, 1);
	return 0;
}

static int stream_close_cb(ngtcp2_conn *conn, uint32_t flags, int64_t sid, uint64_t code, void *user, void *stream_user) {
	(void)conn;
	(void)flags;
	(void)sid;
	(void)code;
	rstream *s = stream_user;
	if (s == NULL) return 0;
	if (s->subscribe) subscription_ended(user, s);
	free(s);
	return 0;
}

/* --- connections -------------------------------------------------------------------------------- */

static void flush(viewer *v) {
	if (v->state == FAILED || v->conn == NULL) return;
	uint8_t packet[MAX_PACKET];
	ngtcp2_path_storage ps;
	ngtcp2_path_storage_zero(&ps);
	ngtcp2_pkt_info pi;
	uint64_t ts = now_ns();
	int next = 0;
	for (int guard = 0; guard < 4096; guard++) {
		outmsg *m = NULL;
		while (next < v->nout && (m = v->out[next])->done) {
			m = NULL;
			next++;
		}
		int64_t sid = -1;
		ngtcp2_vec vec;
		size_t nvec = 0;
		uint32_t flags = 0;
		if (m != NULL) {
			sid = m->sid;
			vec.base = m->bytes + m->off;
			vec.len = m->len - m->off;
			nvec = 1;
			flags = m->fin ? NGTCP2_WRITE_STREAM_FLAG_FIN : 0;
		}
		ngtcp2_ssize written = -1;
		ngtcp2_ssize n = ngtcp2_conn_writev_stream(v->conn, &ps.path, &pi, packet, sizeof packet, &written, flags, sid,
		                                           nvec ? &vec : NULL, nvec, ts);
		if (n < 0) {
			if (m != NULL && (n == NGTCP2_ERR_STREAM_DATA_BLOCKED || n == NGTCP2_ERR_STREAM_SHUT_WR ||
			                  n == NGTCP2_ERR_STREAM_NOT_FOUND)) {
				/* Blocked messages are tried again at the next flush; a stopped stream's are dropped. */
				if (n != NGTCP2_ERR_STREAM_DATA_BLOCKED) m->done = 1;
				next++;
				continue;
			}
			fail(v);
			return;
		}
		if (m != NULL && written >= 0) {
			m->off += (size_t)written;
			if (m->off == m->len) m->done = 1;
		}
		if (n == 0) {
			if (m != NULL) {
				next++;
				continue;
			}
			break;
		}
		if (send(v->fd, packet, (size_t)n, 0) < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNREFUSED) {
			fail(v);
			return;
		}
	}
	ngtcp2_conn_update_pkt_tx_time(v->conn, ts);
}

static void teardown(viewer *v) {
	if (v->conn != NULL) {
		epoll_ctl(ep, EPOLL_CTL_DEL, v->fd, NULL);
		close(v->fd);
		ngtcp2_conn_del(v->conn);
		gnutls_deinit(v->tls);
		v->conn = NULL;
		free(v->sub); /* ngtcp2_conn_del calls no stream callbacks */
		v->sub = NULL;
		for (int i = 0; i < v->nout; i++) free(v->out[i]);
		v->nout = 0;
	}
}

static void connect_viewer(viewer *v) {
	struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *ai;
	if (getaddrinfo(host, port, &hints, &ai) != 0) die("cannot resolve the relay's address");
	v->fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (v->fd < 0) die("socket() failed");
	int size = 4 << 20;
	setsockopt(v->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
	if (gro) {
		int on = 1;
		if (setsockopt(v->fd, SOL_UDP, UDP_GRO, &on, sizeof on) != 0) die("MOQ_LOADGEN_GRO=1: setsockopt(UDP_GRO) refused");
	}
	int stamp = 1;
	if (setsockopt(v->fd, SOL_SOCKET, SO_TIMESTAMPNS, &stamp, sizeof stamp) != 0) die("setsockopt(SO_TIMESTAMPNS) refused");
	if (connect(v->fd, ai->ai_addr, ai->ai_addrlen) != 0) die("connect() failed");
	memcpy(&v->peer, ai->ai_addr, ai->ai_addrlen);
	v->peer_len = ai->ai_addrlen;
	freeaddrinfo(ai);
	v->local_len = sizeof v->local;
	getsockname(v->fd, (struct sockaddr *)&v->local, &v->local_len);

	ngtcp2_callbacks cb;
	memset(&cb, 0, sizeof cb);
	cb.client_initial = ngtcp2_crypto_client_initial_cb;
	cb.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
	cb.encrypt = ngtcp2_crypto_encrypt_cb;
	cb.decrypt = ngtcp2_crypto_decrypt_cb;
	cb.hp_mask = ngtcp2_crypto_hp_mask_cb;
	cb.recv_retry = ngtcp2_crypto_recv_retry_cb;
	cb.update_key = ngtcp2_crypto_update_key_cb;
	cb.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
	cb.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
	cb.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
	cb.version_negotiation = ngtcp2_crypto_version_negotiation_cb;
	cb.rand = rand_cb;
	cb.get_new_connection_id = new_cid_cb;
	cb.handshake_completed = handshake_completed_cb;
	cb.recv_stream_data = recv_stream_data_cb;
	cb.stream_open = stream_open_cb;
	cb.stream_reset = stream_reset_cb;
	cb.stream_close = stream_close_cb;

	ngtcp2_settings settings;
	ngtcp2_settings_default(&settings);
	settings.initial_ts = now_ns();
	settings.max_tx_udp_payload_size = 1350;
	settings.no_pmtud = 1;
	settings.handshake_timeout = 10 * NGTCP2_SECONDS;
	settings.ack_thresh = ack_every;
	ngtcp2_transport_params params;
	ngtcp2_transport_params_default(&params);
	params.initial_max_streams_bidi = 16;
	params.initial_max_streams_uni = 256;
	params.initial_max_stream_data_bidi_local = 256 * 1024;
	params.initial_max_stream_data_bidi_remote = 256 * 1024;
	params.initial_max_stream_data_uni = 4 * 1024 * 1024;
	params.initial_max_data = 32 * 1024 * 1024;
	params.max_idle_timeout = 30 * NGTCP2_SECONDS;

	ngtcp2_cid dcid = {.datalen = 18}, scid = {.datalen = 16};
	rand_bytes(dcid.data, dcid.datalen);
	rand_bytes(scid.data, scid.datalen);
	ngtcp2_path path = {{(ngtcp2_sockaddr *)&v->local, v->local_len}, {(ngtcp2_sockaddr *)&v->peer, v->peer_len}, NULL};
	if (ngtcp2_conn_client_new(&v->conn, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cb, &settings, &params, NULL, v) != 0)
		die("ngtcp2_conn_client_new failed");
	if (gnutls_init(&v->tls, GNUTLS_CLIENT | GNUTLS_NO_END_OF_EARLY_DATA) != 0) die("gnutls_init failed");
	if (gnutls_priority_set_direct(v->tls, PRIORITY, NULL) != 0) die("gnutls priority refused");
	gnutls_credentials_set(v->tls, GNUTLS_CRD_CERTIFICATE, credentials);
	gnutls_datum_t alpn = {(unsigned char *)ALPN, sizeof ALPN - 1};
	gnutls_alpn_set_protocols(v->tls, &alpn, 1, GNUTLS_ALPN_MANDATORY);
	gnutls_server_name_set(v->tls, GNUTLS_NAME_DNS, "localhost", 9);
	if (ngtcp2_crypto_gnutls_configure_client_session(v->tls) != 0) die("ngtcp2_crypto_gnutls_configure_client_session failed");
	v->ref.get_conn = conn_of;
	v->ref.user_data = v;
	gnutls_session_set_ptr(v->tls, &v->ref);
	ngtcp2_conn_set_tls_native_handle(v->conn, v->tls);

	struct epoll_event e = {.events = EPOLLIN, .data.ptr = v};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, v->fd, &e) != 0) die("epoll_ctl failed");
	v->state = CONNECTING;
	flush(v);
}

static void start_more(void) {
	/* Subscribers added but not connected yet have conn == NULL and state CONNECTING. */
	long pending = 0;
	for (size_t i = 0; i < nviewers; i++) {
		viewer *v = viewers[i];
		if (v->conn != NULL && (v->state == CONNECTING || v->state == SUBSCRIBING)) pending++;
	}
	for (size_t i = 0; i < nviewers && pending < MAX_PENDING; i++) {
		viewer *v = viewers[i];
		if (v->conn == NULL && v->state == CONNECTING) {
			v->added_at = now_ns();
			connect_viewer(v);
			pending++;
		}
	}
}

/*
 * A datagram's control messages: the segment size of a GRO buffer (its UDP_GRO message; 0 when it is
 * one datagram), and its kernel receive time (SCM_TIMESTAMPNS, CLOCK_REALTIME) moved to
 * CLOCK_MONOTONIC by `realtime_minus_monotonic` (0 when absent).
 */
static size_t read_cmsgs(const struct msghdr *h, int64_t realtime_minus_monotonic, uint64_t *arrival) {
	size_t segment = 0;
	*arrival = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR((struct msghdr *)h, c)) {
		if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
			int size;
			memcpy(&size, CMSG_DATA(c), sizeof size);
			segment = size > 0 ? (size_t)size : 0;
		} else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS &&
		           c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
			struct timespec t;
			memcpy(&t, CMSG_DATA(c), sizeof t);
			int64_t real = (int64_t)t.tv_sec * 1000000000ll + t.tv_nsec;
			int64_t mono = real - realtime_minus_monotonic;
			*arrival = mono > 0 ? (uint64_t)mono : 0;
		}
	}
	return segment;
}

/* CLOCK_REALTIME − CLOCK_MONOTONIC now, in ns (read once per receive batch). */
static int64_t realtime_offset(void) {
	struct timespec r, m;
	clock_gettime(CLOCK_REALTIME, &r);
	clock_gettime(CLOCK_MONOTONIC, &m);
	return ((int64_t)r.tv_sec - (int64_t)m.tv_sec) * 1000000000ll + ((int64_t)r.tv_nsec - (int64_t)m.tv_nsec);
}

static void read_viewer(viewer *v) {
	static uint8_t buffers[RECV_BATCH][GRO_BUFFER];
	static uint8_t control[RECV_BATCH][CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct timespec))];
	static struct mmsghdr msgs[RECV_BATCH];
	static struct iovec iov[RECV_BATCH];
	ngtcp2_path path = {{(ngtcp2_sockaddr *)&v->local, v->local_len}, {(ngtcp2_sockaddr *)&v->peer, v->peer_len}, NULL};
	ngtcp2_pkt_info pi = {0};
	for (;;) {
		for (int i = 0; i < RECV_BATCH; i++) {
			iov[i].iov_base = buffers[i];
			iov[i].iov_len = gro ? GRO_BUFFER : MAX_PACKET + 548;
			memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
			msgs[i].msg_hdr.msg_control = control[i];
			msgs[i].msg_hdr.msg_controllen = sizeof control[i];
		}
		int n = recvmmsg(v->fd, msgs, RECV_BATCH, 0, NULL);
		if (n <= 0) return;
		int64_t offset = realtime_offset();
		for (int i = 0; i < n && v->state != FAILED; i++) {
			size_t len = msgs[i].msg_len;
			size_t segment = read_cmsgs(&msgs[i].msg_hdr, offset, &arrival_ns);
			if (segment == 0 || segment > len) segment = len;
			for (size_t off = 0; off < len && v->state != FAILED; off += segment) {
				size_t part = len - off < segment ? len - off : segment;
				if (measuring) packets_in++;
				int rv = ngtcp2_conn_read_pkt(v->conn, &path, &pi, buffers[i] + off, part, now_ns());
				if (rv != 0) {
					fail(v);
					return;
				}
				/* Writing after each packet (each segment of a GRO buffer too) lets ngtcp2 acknowledge
				 * every ack_every-th one (RFC 9000 §13.2.2's default is 2) instead of one ACK per batch,
				 * which would flatter the relay. */
				flush(v);
			}
		}
		arrival_ns = 0;
		if (n < RECV_BATCH) return;
	}
}

static void add_viewers(long count) {
	if (nviewers + (size_t)count > cap_viewers) {
		cap_viewers = (nviewers + (size_t)count) * 2;
		viewers = realloc(viewers, cap_viewers * sizeof *viewers);
		if (viewers == NULL) die("out of memory");
	}
	for (long i = 0; i < count; i++) {
		viewer *v = calloc(1, sizeof *v);
		if (v == NULL) die("out of memory");
		v->state = CONNECTING;
		v->group = -1;
		v->fd = -1;
		viewers[nviewers++] = v;
	}
	to_start += count;
	add_pending_total = 1;
	add_failed = 0;
	start_more();
}

/* A histogram's non-empty buckets as JSON pairs [bucket value µs, count], comma-separated. */
static void print_buckets(const uint64_t *h) {
	int first = 1;
	for (int i = 0; i < HIST_BUCKETS; i++) {
		if (h[i] == 0) continue;
		printf("%s[%" PRIu64 ",%" PRIu64 "]", first ? "" : ",", bucket_value(i), h[i]);
		first = 0;
	}
}

static void report(void) {
	long subscribers = 0, silent = 0;
	for (size_t i = 0; i < nviewers; i++) {
		viewer *v = viewers[i];
		if (v->state != RECEIVING) continue;
		subscribers++;
		if (v->frames_in_window == 0) silent++;
	}
	printf("report {\"subscribers\":%ld,\"frames\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"groupsComplete\":%" PRIu64
	       ",\"groupsLost\":%" PRIu64 ",\"silent\":%ld,\"cpuMicros\":%" PRIu64 ",\"elapsedMs\":%.3f,\"failures\":%" PRIu64
	       ",\"packetsIn\":%" PRIu64 ",\"histogram\":[",
	       subscribers, frames, bytes, groups_complete, groups_lost, silent, cpu_us() - cpu_start_us,
	       (double)(now_ns() - window_start_ns) / 1e6, failures, packets_in);
	print_buckets(hist);
	printf("],\"arrivalHistogram\":[");
	print_buckets(hist_arrival);
	printf("]}\n");
	fflush(stdout);
	measuring = 0;
}

static void stop(void) {
	for (size_t i = 0; i < nviewers; i++) {
		viewer *v = viewers[i];
		if (v->conn == NULL || v->state == FAILED) continue;
		uint8_t packet[MAX_PACKET];
		ngtcp2_path_storage ps;
		ngtcp2_path_storage_zero(&ps);
		ngtcp2_pkt_info pi;
#if NGTCP2_VERSION_NUM >= 0x010000
		ngtcp2_ccerr cc;
		ngtcp2_ccerr_default(&cc);
		ngtcp2_ccerr_set_application_error(&cc, 0, (const uint8_t *)"bench done", 10);
#else
		ngtcp2_connection_close_error cc;
		ngtcp2_connection_close_error_default(&cc);
		ngtcp2_connection_close_error_set_application_error(&cc, 0, (const uint8_t *)"bench done", 10);
#endif
		ngtcp2_ssize n = ngtcp2_conn_write_connection_close(v->conn, &ps.path, &pi, packet, sizeof packet, &cc, now_ns());
		if (n > 0) (void)send(v->fd, packet, (size_t)n, 0);
	}
	exit(0);
}

static void command(char *line) {
	if (strncmp(line, "add ", 4) == 0) {
		long n = strtol(line + 4, NULL, 10);
		if (n <= 0 || n > 100000) die("bad add count");
		add_viewers(n);
	} else if (strcmp(line, "reset") == 0) {
		memset(hist, 0, sizeof hist);
		memset(hist_arrival, 0, sizeof hist_arrival);
		frames = bytes = groups_complete = groups_lost = failures = packets_in = 0;
		for (size_t i = 0; i < nviewers; i++) viewers[i]->frames_in_window = 0;
		measuring = 1;
		cpu_start_us = cpu_us();
		window_start_ns = now_ns();
		printf("reset\n");
		fflush(stdout);
	} else if (strcmp(line, "report") == 0) {
		report();
	} else if (strcmp(line, "stop") == 0) {
		stop();
	} else {
		fprintf(stderr, "moq-loadgen: unknown command \"%s\"\n", line);
		exit(2);
	}
}

static void read_commands(void) {
	static char buf[4096];
	static size_t have;
	ssize_t n = read(0, buf + have, sizeof buf - 1 - have);
	if (n == 0) exit(0); /* the parent went away */
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR) return;
		die("reading stdin failed");
	}
	have += (size_t)n;
	char *start = buf, *nl;
	while ((nl = memchr(start, '\n', have - (size_t)(start - buf))) != NULL) {
		*nl = 0;
		command(start);
		start = nl + 1;
	}
	have -= (size_t)(start - buf);
	memmove(buf, start, have);
	if (have == sizeof buf - 1) die("command line too long");
}

static int hexval(char c) {
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

int main(int argc, char **argv) {
	const char *ack = getenv("MOQ_LOADGEN_ACK_EVERY");
	if (ack != NULL && *ack != '\0') {
		char *end;
		long n = strtol(ack, &end, 10);
		if (*end != '\0' || n < 2 || n > 1000) {
			fprintf(stderr, "moq-loadgen: MOQ_LOADGEN_ACK_EVERY must be an integer from 2 to 1000, got \"%s\"\n", ack);
			return 2;
		}
		ack_every = (size_t)n;
	}
	const char *gro_env = getenv("MOQ_LOADGEN_GRO");
	if (gro_env != NULL && *gro_env != '\0') {
		if (strcmp(gro_env, "0") != 0 && strcmp(gro_env, "1") != 0) {
			fprintf(stderr, "moq-loadgen: MOQ_LOADGEN_GRO must be 0 or 1, got \"%s\"\n", gro_env);
			return 2;
		}
		gro = gro_env[0] == '1';
	}
	if (argc == 6 && strcmp(argv[1], "--raw") == 0) {
		raw = 1;
		argc--;
		argv++;
	}
	if (argc != 5) {
		fprintf(stderr, "usage: moq-loadgen [--raw] HOST PORT PATH SHA256_HEX\n");
		return 2;
	}
	host = argv[1];
	port = argv[2];
	session_path = argv[3];
	const char *hex = argv[4];
	if (strlen(hex) != 64) die("the fingerprint must be 64 hex digits");
	for (int i = 0; i < 32; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0) die("the fingerprint must be 64 hex digits");
		pin[i] = (uint8_t)(hi << 4 | lo);
	}
	if (gnutls_certificate_allocate_credentials(&credentials) != 0) die("gnutls credentials");
	ep = epoll_create1(EPOLL_CLOEXEC);
	fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
	struct epoll_event in = {.events = EPOLLIN, .data.ptr = NULL};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &in) != 0) die("epoll_ctl(stdin) failed");
	printf("ready\n");
	fflush(stdout);

	struct epoll_event events[256];
	for (;;) {
		/* The earliest ngtcp2 expiry (loss detection, ACK delay, pacing, idle) or subscribe retry. */
		uint64_t now = now_ns(), next = now + 100000000ull;
		for (size_t i = 0; i < nviewers; i++) {
			viewer *v = viewers[i];
			if (v->conn == NULL || v->state == FAILED) continue;
			uint64_t e = ngtcp2_conn_get_expiry(v->conn);
			if (e < next) next = e;
			if (v->retry_at && v->retry_at < next) next = v->retry_at;
		}
		int timeout = next <= now ? 0 : (int)((next - now + 999999) / 1000000);
		int n = epoll_wait(ep, events, 256, timeout);
		for (int i = 0; i < n; i++) {
			viewer *v = events[i].data.ptr;
			if (v == NULL) read_commands();
			else if (v->conn != NULL && v->state != FAILED) read_viewer(v);
		}
		now = now_ns();
		for (size_t i = 0; i < nviewers; i++) {
			viewer *v = viewers[i];
			if (v->conn == NULL) continue;
			if (v->state == FAILED) {
				teardown(v);
				continue;
			}
			if (ngtcp2_conn_get_expiry(v->conn) <= now) {
				if (ngtcp2_conn_handle_expiry(v->conn, now) != 0) {
					fail(v);
					teardown(v);
					continue;
				}
				flush(v);
			}
			if (v->retry_at && v->retry_at <= now) {
				v->retry_at = 0;
				if (subscribe(v) != 0) fail(v);
				flush(v);
			}
			if (!v->counted && now - v->added_at > ADD_DEADLINE_NS) fail(v);
		}
		if (add_pending_total) {
			start_more();
			if (to_start == 0) {
				long total = 0;
				for (size_t i = 0; i < nviewers; i++) total += viewers[i]->state == RECEIVING;
				printf("added %ld %ld\n", total, add_failed);
				fflush(stdout);
				add_pending_total = 0;
			}
		}
	}
}
