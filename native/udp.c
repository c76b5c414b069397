/*
 * udp.node: batched UDP egress for the QUIC sender (src/quic/sender.ts, docs/quic-performance.md).
 *
 * One call sends every packet of one flush in as few syscalls as the kernel allows:
 * - consecutive packets to the same destination with the same length become one GSO super-packet
 *   (UDP_SEGMENT: the kernel cuts it into datagrams), the last of a run may be shorter; at most
 *   MAX_GSO_SEGMENTS segments and MAX_GSO_BYTES bytes per super-packet;
 * - all super-packets (and single packets) of the batch go out through one sendmmsg, which takes
 *   up to UIO_MAXIOV (1024) messages; it is called again after a partial send.
 *
 * Measured on the 2-vCPU dev box: dgram.send 7.6 µs per packet, sendmmsg of 32 single packets 4.3 µs,
 * GSO super-packets of 32 1.1 µs (/work/shared/notes/native-engine.md).
 *
 * The fd is the Node socket's own (libuv keeps receiving on it), so this code never closes it and
 * never blocks on it (MSG_DONTWAIT). What the kernel refuses:
 * - EAGAIN / ENOBUFS / ENOMEM: stop; the caller hands the unsent rest to dgram.send, which libuv
 *   queues until the socket is writable (nothing lost, order kept);
 * - EIO / EINVAL on a GSO message: the kernel or device cannot segment (no checksum offload,
 *   SO_NO_CHECK, a route MTU below the segment size): GSO is turned off for that fd and the batch
 *   goes on without it;
 * - a socket-level error (EBADF, ENOTSOCK, ...): stop and report it; the caller stops using us;
 * - any other error belongs to one destination (EHOSTUNREACH, EPERM from a firewall, ...): that
 *   message is dropped, like dgram.send drops it, and counted.
 *
 * Per-fd state (whether GSO works) lives in the per-environment instance data: the addon is loaded
 * in several worker threads, each with its own environment, so there are no mutable globals.
 *
 * It also carries two process-memory calls for the relay's housekeeping (see "process memory"
 * below): the allocator's figures (mallinfo2) and malloc_trim, which hands the free pages that
 * glibc's per-thread arenas keep back to the kernel.
 *
 * Build: node native/build.mjs (the package's install script).
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/sock_diag.h>
#endif

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103 /* linux/udp.h, since Linux 4.18 */
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

/* Bumped whenever the JS-facing contract changes; the loader refuses a stale build. */
#define ABI_VERSION 4
/* sendmmsg sends at most UIO_MAXIOV (1024) messages per call; a batch never needs more. */
#define MAX_BATCH_PACKETS 1024
/* The kernel's UDP_MAX_SEGMENTS was 64 before Linux 6.9 (128 since): 64 works everywhere. */
#define MAX_GSO_SEGMENTS 64
/* Largest UDP payload over IPv4 (65535 - 20 - 8); a super-packet is one UDP payload to the kernel. */
#define MAX_GSO_BYTES 65507
/* Each destination entry in the address table: a sockaddr_in or sockaddr_in6 (28 bytes), padded. */
#define ADDRESS_STRIDE 32

#define FLAG_GSO 1

/* Slots of the Float64Array `out` that sendBatch fills (this call's figures). */
enum {
	OUT_SYSCALLS,       /* sendmmsg calls made */
	OUT_GSO_PACKETS,    /* packets that left inside super-packets of 2+ segments */
	OUT_SINGLE_PACKETS, /* packets that left as a message of their own */
	OUT_GSO_FALLBACKS,  /* 1 when this call turned GSO off for the fd */
	OUT_DROPPED,        /* packets refused for their destination (counted as sent: consumed) */
	OUT_STOP,           /* why the batch stopped early: STOP_* */
	OUT_ERRNO,          /* the errno behind OUT_STOP (or of the last dropped message) */
	OUT_SLOTS
};
enum { STOP_NONE = 0, STOP_WOULD_BLOCK = 1, STOP_SOCKET_ERROR = 2 };

/* Whether UDP_SEGMENT works on an fd: probed on first use, turned off on EIO/EINVAL. */
typedef struct {
	int fd;
	bool gso;
} SocketState;

typedef union {
	char bytes[CMSG_SPACE(sizeof(uint16_t))];
	struct cmsghdr align;
} GsoControl;

/* One per environment (thread): socket states and the scratch arrays of one sendBatch call. */
typedef struct {
	SocketState *sockets;
	size_t socket_count;
	size_t socket_capacity;
	struct mmsghdr msgs[MAX_BATCH_PACKETS];
	struct iovec iovs[MAX_BATCH_PACKETS];
	GsoControl controls[MAX_BATCH_PACKETS];
	/* Per message: index of its first packet and how many packets (segments) it carries. */
	uint32_t first_packet[MAX_BATCH_PACKETS];
	uint32_t segments[MAX_BATCH_PACKETS];
	/* Batched receivers (recvStart), newest first. */
	struct Receiver *receivers;
	uint32_t next_receiver_id;
} Instance;

/* ---- helpers --------------------------------------------------------------------------------- */

#define NAPI_CALL(env, call)                                                                         \
	do {                                                                                             \
		if ((call) != napi_ok) {                                                                     \
			throw_pending_or(env, #call " failed");                                                  \
			return NULL;                                                                             \
		}                                                                                            \
	} while (0)

static void throw_pending_or(napi_env env, const char *message) {
	bool pending = false;
	if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return;
	napi_throw_error(env, NULL, message);
}

static napi_value throw_range(napi_env env, const char *message) {
	napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
	return NULL;
}

static napi_value throw_type(napi_env env, const char *message) {
	napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
	return NULL;
}

/* An integer-valued JS number in [min, max]; false (with a JS exception thrown) otherwise. */
static bool get_integer(napi_env env, napi_value value, const char *name, int64_t min, int64_t max, int64_t *result) {
	char message[128];
	napi_valuetype type;
	double number;
	if (napi_typeof(env, value, &type) != napi_ok || type != napi_number) {
		snprintf(message, sizeof message, "%s must be a number", name);
		throw_type(env, message);
		return false;
	}
	if (napi_get_value_double(env, value, &number) != napi_ok || number != number || number < (double)min ||
	    number > (double)max || (double)(int64_t)number != number) {
		snprintf(message, sizeof message, "%s must be an integer in [%lld, %lld]", name, (long long)min,
		         (long long)max);
		throw_range(env, message);
		return false;
	}
	*result = (int64_t)number;
	return true;
}

/* A typed array of `want` type; false (with a JS exception thrown) otherwise. */
static bool get_typed_array(napi_env env, napi_value value, const char *name, napi_typedarray_type want,
                            void **data, size_t *length) {
	char message[128];
	bool is_typed = false;
	napi_typedarray_type type;
	if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed ||
	    napi_get_typedarray_info(env, value, &type, length, data, NULL, NULL) != napi_ok || type != want) {
		static const char *names[] = {"Int8Array",    "Uint8Array",    "Uint8ClampedArray", "Int16Array",
		                              "Uint16Array",  "Int32Array",    "Uint32Array",       "Float32Array",
		                              "Float64Array", "BigInt64Array", "BigUint64Array"};
		snprintf(message, sizeof message, "%s must be a %s", name,
		         (size_t)want < sizeof names / sizeof names[0] ? names[want] : "typed array");
		throw_type(env, message);
		return false;
	}
	return true;
}

static Instance *instance_of(napi_env env) {
	void *data = NULL;
	if (napi_get_instance_data(env, &data) != napi_ok) return NULL;
	return (Instance *)data;
}

static SocketState *find_socket(Instance *inst, int fd) {
	for (size_t i = 0; i < inst->socket_count; i++) {
		if (inst->sockets[i].fd == fd) return &inst->sockets[i];
	}
	return NULL;
}

/*
 * The state of `fd`, created on first use. GSO is on only where getsockopt(UDP_SEGMENT) answers:
 * a kernel without UDP GSO would not reject the cmsg but ignore it and send one oversized datagram.
 * NULL when out of memory (the caller then sends without GSO).
 */
static SocketState *socket_state(Instance *inst, int fd) {
	SocketState *state = find_socket(inst, fd);
	if (state != NULL) return state;
	if (inst->socket_count == inst->socket_capacity) {
		size_t capacity = inst->socket_capacity == 0 ? 8 : inst->socket_capacity * 2;
		SocketState *grown = realloc(inst->sockets, capacity * sizeof *grown);
		if (grown == NULL) return NULL;
		inst->sockets = grown;
		inst->socket_capacity = capacity;
	}
	int value = 0;
	socklen_t length = sizeof value;
	state = &inst->sockets[inst->socket_count++];
	state->fd = fd;
	state->gso = getsockopt(fd, SOL_UDP, UDP_SEGMENT, &value, &length) == 0;
	return state;
}

static bool address_family_ok(const uint8_t *entry) {
	sa_family_t family;
	memcpy(&family, entry, sizeof family);
	return family == AF_INET || family == AF_INET6;
}

static socklen_t address_length(const uint8_t *entry) {
	sa_family_t family;
	memcpy(&family, entry, sizeof family);
	return family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* ---- sendBatch ------------------------------------------------------------------------------- */

typedef struct {
	uint8_t *packets;
	uint32_t slot_size;
	const int32_t *meta; /* per packet: length, destination index */
	uint8_t *addresses;
} Batch;

/*
 * Groups packets [first, count) into messages. A GSO run continues while the next packet goes to
 * the same destination with the run's segment size; a shorter one ends it as its last segment.
 * Returns the number of messages.
 */
static uint32_t build_messages(Instance *inst, const Batch *batch, uint32_t first, uint32_t count, bool gso) {
	uint32_t messages = 0;
	uint32_t i = first;
	while (i < count) {
		int32_t destination = batch->meta[2 * i + 1];
		uint32_t segment = (uint32_t)batch->meta[2 * i];
		uint32_t run = 1;
		uint32_t bytes = segment;
		inst->iovs[i].iov_base = batch->packets + (size_t)i * batch->slot_size;
		inst->iovs[i].iov_len = segment;
		if (gso) {
			while (i + run < count && run < MAX_GSO_SEGMENTS) {
				uint32_t next = i + run;
				uint32_t length = (uint32_t)batch->meta[2 * next];
				if (batch->meta[2 * next + 1] != destination || length > segment || bytes + length > MAX_GSO_BYTES) {
					break;
				}
				inst->iovs[next].iov_base = batch->packets + (size_t)next * batch->slot_size;
				inst->iovs[next].iov_len = length;
				bytes += length;
				run++;
				if (length < segment) break; /* a short packet can only be the last segment */
			}
		}
		struct msghdr *header = &inst->msgs[messages].msg_hdr;
		uint8_t *address = batch->addresses + (size_t)destination * ADDRESS_STRIDE;
		header->msg_name = address;
		header->msg_namelen = address_length(address);
		header->msg_iov = &inst->iovs[i];
		header->msg_iovlen = run;
		header->msg_flags = 0;
		if (run > 1) {
			GsoControl *control = &inst->controls[messages];
			memset(control, 0, sizeof *control);
			header->msg_control = control->bytes;
			header->msg_controllen = sizeof control->bytes;
			struct cmsghdr *cmsg = CMSG_FIRSTHDR(header);
			cmsg->cmsg_level = SOL_UDP;
			cmsg->cmsg_type = UDP_SEGMENT;
			cmsg->cmsg_len = CMSG_LEN(sizeof(uint16_t));
			uint16_t size = (uint16_t)segment;
			memcpy(CMSG_DATA(cmsg), &size, sizeof size);
		} else {
			header->msg_control = NULL;
			header->msg_controllen = 0;
		}
		inst->msgs[messages].msg_len = 0;
		inst->first_packet[messages] = i;
		inst->segments[messages] = run;
		messages++;
		i += run;
	}
	return messages;
}

static bool would_block(int error) {
	return error == EAGAIN || error == EWOULDBLOCK || error == ENOBUFS || error == ENOMEM;
}

/* Errors that say the fd itself is unusable: no other message would fare better. */
static bool socket_error(int error) {
	return error == EBADF || error == ENOTSOCK || error == EFAULT || error == EOPNOTSUPP || error == EPIPE ||
	       error == EDESTADDRREQ || error == ENOTCONN || error == EISCONN;
}

/*
 * sendBatch(fd, packets, slotSize, meta, count, addresses, flags, out) -> packets consumed
 *   packets:   Uint8Array; packet i lies at i * slotSize
 *   meta:      Int32Array; [2i] = length of packet i (1..slotSize), [2i+1] = its destination index
 *   addresses: Uint8Array of ADDRESS_STRIDE-byte entries (sockaddr_in / sockaddr_in6, see writeSockaddr)
 *   flags:     FLAG_GSO to allow GSO
 *   out:       Float64Array(OUT_SLOTS), overwritten with this call's figures
 * Returns how many packets, from the first, were consumed (sent, or dropped for their destination).
 * Fewer than `count` only when out[OUT_STOP] says why; the rest is the caller's to send.
 */
static napi_value SendBatch(napi_env env, napi_callback_info info) {
	size_t argc = 8;
	napi_value args[8];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, NULL, NULL));
	if (argc < 8) return throw_type(env, "sendBatch(fd, packets, slotSize, meta, count, addresses, flags, out)");
	Instance *inst = instance_of(env);
	if (inst == NULL) {
		throw_pending_or(env, "udp addon: instance data missing");
		return NULL;
	}

	int64_t fd, slot_size, count, flags;
	void *packets, *meta, *addresses, *out_data;
	size_t packets_length, meta_length, addresses_length, out_length;
	if (!get_integer(env, args[0], "fd", 0, INT32_MAX, &fd)) return NULL;
	if (!get_typed_array(env, args[1], "packets", napi_uint8_array, &packets, &packets_length)) return NULL;
	if (!get_integer(env, args[2], "slotSize", 1, MAX_GSO_BYTES, &slot_size)) return NULL;
	if (!get_typed_array(env, args[3], "meta", napi_int32_array, &meta, &meta_length)) return NULL;
	if (!get_integer(env, args[4], "count", 0, MAX_BATCH_PACKETS, &count)) return NULL;
	if (!get_typed_array(env, args[5], "addresses", napi_uint8_array, &addresses, &addresses_length)) return NULL;
	if (!get_integer(env, args[6], "flags", 0, FLAG_GSO, &flags)) return NULL;
	if (!get_typed_array(env, args[7], "out", napi_float64_array, &out_data, &out_length)) return NULL;
	if (out_length < OUT_SLOTS) return throw_range(env, "out must hold at least 7 slots");
	if (meta_length < (size_t)count * 2) return throw_range(env, "meta holds fewer than 2 * count entries");
	if ((size_t)count * (size_t)slot_size > packets_length) return throw_range(env, "packets is shorter than count * slotSize");

	const int32_t *entries = meta;
	size_t address_count = addresses_length / ADDRESS_STRIDE;
	char message[128];
	for (int64_t i = 0; i < count; i++) {
		int32_t length = entries[2 * i];
		int32_t destination = entries[2 * i + 1];
		if (length < 1 || length > slot_size) {
			snprintf(message, sizeof message, "packet %lld: length %d is outside 1..slotSize", (long long)i, length);
			return throw_range(env, message);
		}
		if (destination < 0 || (size_t)destination >= address_count) {
			snprintf(message, sizeof message, "packet %lld: destination %d is outside the address table",
			         (long long)i, destination);
			return throw_range(env, message);
		}
		if (!address_family_ok((uint8_t *)addresses + (size_t)destination * ADDRESS_STRIDE)) {
			snprintf(message, sizeof message, "address entry %d is neither AF_INET nor AF_INET6", destination);
			return throw_range(env, message);
		}
	}

	double *out = out_data;
	for (int k = 0; k < OUT_SLOTS; k++) out[k] = 0;
	napi_value result;
	if (count == 0) {
		NAPI_CALL(env, napi_create_uint32(env, 0, &result));
		return result;
	}

	Batch batch = {packets, (uint32_t)slot_size, entries, addresses};
	SocketState *state = (flags & FLAG_GSO) ? socket_state(inst, (int)fd) : NULL;
	uint32_t messages = build_messages(inst, &batch, 0, (uint32_t)count, state != NULL && state->gso);
	uint32_t next = 0;     /* first message not yet handled */
	uint32_t consumed = 0; /* packets sent or dropped, from the first */
	int64_t gso_blamed_at = -1;        /* the packet whose message made us turn GSO off in this call */
	int32_t refused_destination = -1; /* a destination refused with EINVAL without GSO in this call */
	while (next < messages) {
		int sent = sendmmsg((int)fd, &inst->msgs[next], messages - next, MSG_DONTWAIT);
		out[OUT_SYSCALLS]++;
		if (sent > 0) {
			for (uint32_t m = next; m < next + (uint32_t)sent; m++) {
				uint32_t segments = inst->segments[m];
				out[segments > 1 ? OUT_GSO_PACKETS : OUT_SINGLE_PACKETS] += segments;
				consumed += segments;
			}
			next += (uint32_t)sent;
			continue;
		}
		if (sent == 0) {
			/* Not documented for vlen > 0; treat it as "try later" rather than guess a culprit. */
			out[OUT_STOP] = STOP_WOULD_BLOCK;
			break;
		}
		/* sendmmsg reports an error only when the first message failed: msgs[next] is the culprit. */
		int error = errno;
		if (error == EINTR) continue;
		if (would_block(error)) {
			out[OUT_STOP] = STOP_WOULD_BLOCK;
			out[OUT_ERRNO] = error;
			break;
		}
		if (socket_error(error)) {
			out[OUT_STOP] = STOP_SOCKET_ERROR;
			out[OUT_ERRNO] = error;
			break;
		}
		uint32_t first = inst->first_packet[next];
		int32_t destination = entries[2 * first + 1];
		if ((error == EIO || error == EINVAL) && inst->segments[next] > 1 && state != NULL &&
		    destination != refused_destination) {
			/* The kernel refused to segment: GSO off for this fd, the rest resent one datagram per message. */
			state->gso = false;
			out[OUT_GSO_FALLBACKS] = 1;
			gso_blamed_at = first;
			messages = build_messages(inst, &batch, first, (uint32_t)count, false);
			next = 0;
			continue;
		}
		/* This destination refused (unreachable, firewalled, ...): dropped, as dgram.send drops it. */
		out[OUT_DROPPED] += inst->segments[next];
		out[OUT_ERRNO] = error;
		consumed += inst->segments[next];
		if (error == EINVAL && first == gso_blamed_at) {
			/* The same packet fails without GSO too: its address was at fault, not GSO. GSO back on
			 * for the rest of the batch; that destination's other messages are not blamed on it again. */
			state->gso = true;
			out[OUT_GSO_FALLBACKS] = 0;
			gso_blamed_at = -1;
			refused_destination = destination;
			messages = build_messages(inst, &batch, first + inst->segments[next], (uint32_t)count, true);
			next = 0;
			continue;
		}
		next++;
	}
	NAPI_CALL(env, napi_create_uint32(env, consumed, &result));
	return result;
}

/* ---- addresses ------------------------------------------------------------------------------- */

/*
 * writeSockaddr(target, offset, address, port, ipv6Socket)
 * Writes the sockaddr for (address, port) into target[offset, offset + ADDRESS_STRIDE), in the
 * form the socket takes: an IPv6 socket (Node's "udp6", dual-stack) needs IPv4 destinations as
 * v4-mapped sockaddr_in6; an IPv4 socket takes a v4-mapped IPv6 address as plain IPv4 and refuses
 * any other IPv6 address. A zone ("fe80::1%eth0" or "%2") becomes the scope id.
 */
static napi_value WriteSockaddr(napi_env env, napi_callback_info info) {
	size_t argc = 5;
	napi_value args[5];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, NULL, NULL));
	if (argc < 5) return throw_type(env, "writeSockaddr(target, offset, address, port, ipv6Socket)");
	void *target;
	size_t target_length;
	int64_t offset, port;
	if (!get_typed_array(env, args[0], "target", napi_uint8_array, &target, &target_length)) return NULL;
	if (!get_integer(env, args[1], "offset", 0, INT32_MAX, &offset)) return NULL;
	if ((size_t)offset + ADDRESS_STRIDE > target_length) return throw_range(env, "offset + 32 is past the end of target");
	napi_valuetype type;
	NAPI_CALL(env, napi_typeof(env, args[2], &type));
	if (type != napi_string) return throw_type(env, "address must be a string");
	char text[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
	size_t text_length;
	NAPI_CALL(env, napi_get_value_string_utf8(env, args[2], NULL, 0, &text_length));
	if (text_length == 0 || text_length >= sizeof text) return throw_range(env, "address is not an IP address");
	NAPI_CALL(env, napi_get_value_string_utf8(env, args[2], text, sizeof text, &text_length));
	if (strlen(text) != text_length) return throw_range(env, "address is not an IP address");
	if (!get_integer(env, args[3], "port", 1, 65535, &port)) return NULL;
	bool ipv6_socket = false;
	NAPI_CALL(env, napi_typeof(env, args[4], &type));
	if (type != napi_boolean) return throw_type(env, "ipv6Socket must be a boolean");
	NAPI_CALL(env, napi_get_value_bool(env, args[4], &ipv6_socket));

	uint8_t entry[ADDRESS_STRIDE];
	memset(entry, 0, sizeof entry);
	struct in_addr v4;
	struct in6_addr v6;
	uint32_t scope = 0;
	bool is_v4 = inet_pton(AF_INET, text, &v4) == 1;
	if (!is_v4) {
		char *zone = strchr(text, '%');
		if (zone != NULL) {
			*zone++ = 0;
			char *end = NULL;
			unsigned long number = strtoul(zone, &end, 10);
			if (*zone != 0 && end != NULL && *end == 0 && number <= UINT32_MAX) scope = (uint32_t)number;
			else scope = if_nametoindex(zone);
			if (scope == 0) return throw_range(env, "address has an unknown zone");
		}
		if (inet_pton(AF_INET6, text, &v6) != 1) return throw_range(env, "address is not an IP address");
		if (!ipv6_socket) {
			if (!IN6_IS_ADDR_V4MAPPED(&v6)) return throw_range(env, "an IPv6 address cannot be reached from an IPv4 socket");
			memcpy(&v4, &v6.s6_addr[12], sizeof v4);
			is_v4 = true;
		}
	} else if (ipv6_socket) {
		memset(&v6, 0, sizeof v6);
		v6.s6_addr[10] = 0xff;
		v6.s6_addr[11] = 0xff;
		memcpy(&v6.s6_addr[12], &v4, sizeof v4);
	}
	if (ipv6_socket) {
		struct sockaddr_in6 address = {0};
		address.sin6_family = AF_INET6;
		address.sin6_port = htons((uint16_t)port);
		address.sin6_addr = v6;
		address.sin6_scope_id = scope;
		memcpy(entry, &address, sizeof address);
	} else {
		struct sockaddr_in address = {0};
		address.sin_family = AF_INET;
		address.sin_port = htons((uint16_t)port);
		address.sin_addr = v4;
		memcpy(entry, &address, sizeof address);
	}
	memcpy((uint8_t *)target + offset, entry, sizeof entry);
	napi_value undefined;
	NAPI_CALL(env, napi_get_undefined(env, &undefined));
	return undefined;
}

/* ---- per-socket state ------------------------------------------------------------------------ */

/* forgetSocket(fd): the socket closed; its fd number may be reused by another socket. */
static napi_value ForgetSocket(napi_env env, napi_callback_info info) {
	size_t argc = 1;
	napi_value args[1];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, NULL, NULL));
	int64_t fd;
	if (argc < 1) return throw_type(env, "forgetSocket(fd)");
	if (!get_integer(env, args[0], "fd", 0, INT32_MAX, &fd)) return NULL;
	Instance *inst = instance_of(env);
	if (inst != NULL) {
		SocketState *state = find_socket(inst, (int)fd);
		if (state != NULL) *state = inst->sockets[--inst->socket_count];
	}
	napi_value undefined;
	NAPI_CALL(env, napi_get_undefined(env, &undefined));
	return undefined;
}

/* gsoEnabled(fd) -> true / false, or null before the first GSO send on it. */
static napi_value GsoEnabled(napi_env env, napi_callback_info info) {
	size_t argc = 1;
	napi_value args[1];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, NULL, NULL));
	int64_t fd;
	if (argc < 1) return throw_type(env, "gsoEnabled(fd)");
	if (!get_integer(env, args[0], "fd", 0, INT32_MAX, &fd)) return NULL;
	Instance *inst = instance_of(env);
	SocketState *state = inst == NULL ? NULL : find_socket(inst, (int)fd);
	napi_value result;
	if (state == NULL) NAPI_CALL(env, napi_get_null(env, &result));
	else NAPI_CALL(env, napi_get_boolean(env, state->gso, &result));
	return result;
}

/*
 * setNoChecksumForTesting(fd, on): SO_NO_CHECK. Tests only: the kernel refuses UDP_SEGMENT to IPv4
 * destinations with EINVAL on such a socket (udp_send_skb), the one GSO failure a test can cause on
 * loopback, while plain datagrams still go out (a zero UDP checksum is valid over IPv4; over IPv6
 * receivers drop it, so UDP_NO_CHECK6_TX would not do).
 */
static napi_value SetNoChecksumForTesting(napi_env env, napi_callback_info info) {
	size_t argc = 2;
	napi_value args[2];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, NULL, NULL));
	int64_t fd;
	bool on = false;
	if (argc < 2) return throw_type(env, "setNoChecksumForTesting(fd, on)");
	if (!get_integer(env, args[0], "fd", 0, INT32_MAX, &fd)) return NULL;
	NAPI_CALL(env, napi_get_value_bool(env, args[1], &on));
	int value = on ? 1 : 0;
	if (setsockopt((int)fd, SOL_SOCKET, SO_NO_CHECK, &value, sizeof value) != 0) {
		char message[96];
		snprintf(message, sizeof message, "setsockopt(SO_NO_CHECK) failed: errno %d", errno);
		napi_throw_error(env, NULL, message);
		return NULL;
	}
	napi_value undefined;
	NAPI_CALL(env, napi_get_undefined(env, &undefined));
	return undefined;
}

/* setRecvErrorsForTesting(fd, ipv6): IP_RECVERR (IPV6_RECVERR) on, so ICMP errors raise EPOLLERR. */
static napi_value SetRecvErrorsForTesting(napi_env env, napi_callback_info info) {
	size_t argc = 2;
	napi_value args[2];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, NULL, NULL));
	int64_t fd;
	bool ipv6 = false;
	if (argc < 2) return throw_type(env, "setRecvErrorsForTesting(fd, ipv6)");
	if (!get_integer(env, args[0], "fd", 0, INT32_MAX, &fd)) return NULL;
	NAPI_CALL(env, napi_get_value_bool(env, args[1], &ipv6));
	int value = 1;
	int rc = ipv6 ? setsockopt((int)fd, IPPROTO_IPV6, IPV6_RECVERR, &value, sizeof value)
	              : setsockopt((int)fd, IPPROTO_IP, IP_RECVERR, &value, sizeof value);
	if (rc != 0) {
		char message[96];
		snprintf(message, sizeof message, "setsockopt(IP_RECVERR) failed: errno %d", errno);
		napi_throw_error(env, NULL, message);
		return NULL;
	}
	return NULL;
}

/* ---- process memory -------------------------------------------------------------------------- */

/*
 * Why: quiche (Rust, through its napi binding) and Node allocate with glibc malloc from every worker
 * thread, and each thread gets its own arena. Memory freed inside an arena stays mapped (counted in
 * RSS) until the arena's top chunk is free, which on a relay with long-lived connections it rarely
 * is: RSS then climbs by the churn's high-water marks while the bytes in use stay flat.
 * malloc_trim(0) walks every arena and returns whole free pages (madvise MADV_DONTNEED).
 * mallinfo2 (glibc 2.33+) reports the bytes in use and the free bytes malloc keeps.
 */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
#define HAVE_MALLINFO2 1
#endif

enum { MEM_ARENA = 0, MEM_MMAPPED = 1, MEM_IN_USE = 2, MEM_FREE = 3, MEM_RELEASABLE = 4, MEM_SLOTS = 5 };

/*
 * mallocInfo(out: Float64Array(5)) -> true, with out = [arena bytes (sbrk/arena heaps), mmapped
 * bytes, bytes in use, free bytes held, releasable top bytes]; false where the C library has no
 * mallinfo2 (out untouched). Process-wide: every thread's arena is counted.
 */
static napi_value MallocInfo(napi_env env, napi_callback_info info) {
	size_t argc = 1;
	napi_value args[1];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, NULL, NULL));
	if (argc < 1) return throw_type(env, "mallocInfo(out)");
	napi_typedarray_type type;
	size_t length;
	void *data;
	napi_value buffer;
	size_t offset;
	bool is_typedarray = false;
	NAPI_CALL(env, napi_is_typedarray(env, args[0], &is_typedarray));
	if (!is_typedarray) return throw_type(env, "mallocInfo: out must be a Float64Array");
	NAPI_CALL(env, napi_get_typedarray_info(env, args[0], &type, &length, &data, &buffer, &offset));
	if (type != napi_float64_array || length < MEM_SLOTS) {
		return throw_range(env, "mallocInfo: out must be a Float64Array of at least 5 elements");
	}
	bool ok = false;
#ifdef HAVE_MALLINFO2
	struct mallinfo2 m = mallinfo2();
	double *out = data;
	out[MEM_ARENA] = (double)m.arena;
	out[MEM_MMAPPED] = (double)m.hblkhd;
	out[MEM_IN_USE] = (double)m.uordblks + (double)m.hblkhd;
	out[MEM_FREE] = (double)m.fordblks;
	out[MEM_RELEASABLE] = (double)m.keepcost;
	ok = true;
#else
	(void)data;
#endif
	napi_value result;
	NAPI_CALL(env, napi_get_boolean(env, ok, &result));
	return result;
}

/*
 * receiveQueue(fd, out) -> true with out[QUEUE_BYTES] = the bytes waiting in the socket's receive
 * queue now (sk_rmem_alloc: every datagram's buffer truesize, what counts against SO_RCVBUF) and
 * out[QUEUE_DROPS] = the datagrams the kernel dropped on arrival since the socket was created
 * (sk_drops, a 32-bit count that wraps; for UDP nearly always a full queue). SO_MEMINFO (Linux
 * 4.6+) reads both in one getsockopt with no side effect on the socket; false where it is missing
 * or `fd` is not a socket, so the caller falls back to /proc/net/udp.
 */
enum { QUEUE_BYTES = 0, QUEUE_DROPS = 1, QUEUE_SLOTS = 2 };

static napi_value ReceiveQueue(napi_env env, napi_callback_info info) {
	size_t argc = 2;
	napi_value args[2];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, NULL, NULL));
	if (argc < 2) return throw_type(env, "receiveQueue(fd, out)");
	int64_t fd;
	if (!get_integer(env, args[0], "fd", 0, INT32_MAX, &fd)) return NULL;
	void *data;
	size_t length;
	if (!get_typed_array(env, args[1], "out", napi_float64_array, &data, &length)) return NULL;
	if (length < QUEUE_SLOTS) return throw_range(env, "receiveQueue: out must hold at least 2 elements");
	bool ok = false;
#if defined(__linux__) && defined(SO_MEMINFO)
	uint32_t mem[SK_MEMINFO_VARS];
	socklen_t size = sizeof mem;
	memset(mem, 0, sizeof mem);
	/* An older kernel fills fewer entries and says so in `size`: DROPS must be among them. */
	if (getsockopt((int)fd, SOL_SOCKET, SO_MEMINFO, mem, &size) == 0 &&
	    size >= (socklen_t)((SK_MEMINFO_DROPS + 1) * sizeof(uint32_t))) {
		double *out = data;
		out[QUEUE_BYTES] = (double)mem[SK_MEMINFO_RMEM_ALLOC];
		out[QUEUE_DROPS] = (double)mem[SK_MEMINFO_DROPS];
		ok = true;
	}
#else
	(void)data;
	(void)fd;
#endif
	napi_value result;
	NAPI_CALL(env, napi_get_boolean(env, ok, &result));
	return result;
}

/* mallocTrim() -> true when memory was returned to the kernel; false when none was, or no glibc. */
static napi_value MallocTrim(napi_env env, napi_callback_info info) {
	(void)info;
	bool released = false;
#ifdef __GLIBC__
	released = malloc_trim(0) != 0;
#endif
	napi_value result;
	NAPI_CALL(env, napi_get_boolean(env, released, &result));
	return result;
}

/* ---- batched ingress: recvmmsg under a libuv poll --------------------------------------------- */

/*
 * recvStart(fd, slots, slotSize, meta, onBatch) -> id, recvStop(id)
 *
 * Node's dgram delivers each datagram with its own syscall, its own Buffer, an address string and
 * a JS call (the relay's profile at 100 viewers: 19 % of its CPU in UDPWrap::OnRecv, mostly for
 * ACKs). Here one recvmmsg takes up to `slots / slotSize` datagrams into one preallocated buffer,
 * and one JS call, onBatch(count), hands them over: datagram i lies at slots[i * slotSize], its
 * length, source port, family and address in meta[i * RECV_META ...] (RECV_*).
 *
 * The socket stays Node's: the caller stops libuv's own reading (recvStop of the dgram handle) and
 * this code polls a dup() of the fd, so libuv's watcher of the original fd and ours never collide
 * (epoll keys registrations by fd), and the socket lives until both are closed. recvStop closes the
 * dup; the environment's async cleanup hook does it when the thread ends first.
 *
 * libuv's types are not in the Node-API headers: the few calls used here are declared below from
 * libuv 1.x's stable ABI (uv_poll_init/start/stop, uv_close; node exports them), and the uv_poll_t
 * lives in storage larger than any libuv 1.x build's (about 160 bytes on x86-64), at the start of
 * the receiver so the callbacks' handle pointer is the receiver itself.
 */
typedef struct uv_loop_s uv_loop_t;
typedef struct uv_handle_s uv_handle_t;
typedef struct uv_poll_s uv_poll_t;
typedef void (*uv_poll_cb)(uv_poll_t *handle, int status, int events);
typedef void (*uv_close_cb)(uv_handle_t *handle);
extern int uv_poll_init(uv_loop_t *loop, uv_poll_t *handle, int fd);
extern int uv_poll_start(uv_poll_t *handle, int events, uv_poll_cb cb);
extern int uv_poll_stop(uv_poll_t *handle);
extern void uv_close(uv_handle_t *handle, uv_close_cb close_cb);
extern void uv_ref(uv_handle_t *handle);
extern void uv_unref(uv_handle_t *handle);
#define UV_READABLE 1

/* Datagrams per recvmmsg call, and calls per readiness event before other handles get a turn. */
#define MAX_RECV_BATCH 256
#define RECV_ROUNDS 8
/* meta per datagram: its length (-1: larger than a slot, cut short: drop it), the source port, the
 * address family (4 or 6) and the address: IPv4 in word 0, IPv6 in words 0..3 (network order). */
enum { RECV_LENGTH, RECV_PORT, RECV_FAMILY, RECV_ADDR, RECV_META = RECV_ADDR + 4 };

typedef struct Receiver {
	_Alignas(16) uint8_t poll[512];
	napi_env env;
	uint32_t id;
	int fd;
	uint8_t *slots;
	size_t slot_size;
	uint32_t capacity;
	int32_t *meta;
	napi_ref on_batch, slots_ref, meta_ref, resource;
	napi_async_context async;
	napi_async_cleanup_hook_handle cleanup;
	bool closing, tearing_down;
	/* Socket errors consumed (receiver_recover). */
	uint32_t errors;
	struct Receiver *next;
	struct mmsghdr msgs[MAX_RECV_BATCH];
	struct iovec iovs[MAX_RECV_BATCH];
	struct sockaddr_storage names[MAX_RECV_BATCH];
} Receiver;

static Receiver **receivers_of(napi_env env) {
	Instance *inst = instance_of(env);
	return inst == NULL ? NULL : &inst->receivers;
}

static void receiver_readable(uv_poll_t *handle, int status, int events);

static void receiver_closed(uv_handle_t *handle) {
	Receiver *r = (Receiver *)handle;
	close(r->fd);
	/* In the environment's teardown Node drops every reference itself; napi calls are not made then. */
	if (!r->tearing_down) {
		Receiver **link = receivers_of(r->env);
		while (link != NULL && *link != NULL && *link != r) link = &(*link)->next;
		if (link != NULL && *link == r) *link = r->next;
		if (r->on_batch != NULL) napi_delete_reference(r->env, r->on_batch);
		if (r->slots_ref != NULL) napi_delete_reference(r->env, r->slots_ref);
		if (r->meta_ref != NULL) napi_delete_reference(r->env, r->meta_ref);
		if (r->resource != NULL) napi_delete_reference(r->env, r->resource);
		if (r->async != NULL) napi_async_destroy(r->env, r->async);
	}
	/* Unregisters the hook, or (when it ran) tells Node that this part of the teardown is done. */
	if (r->cleanup != NULL) napi_remove_async_cleanup_hook(r->cleanup);
	free(r);
}

static void receiver_close(Receiver *r) {
	if (r->closing) return;
	r->closing = true;
	uv_poll_stop((uv_poll_t *)r->poll);
	uv_close((uv_handle_t *)r->poll, receiver_closed);
}

static void receiver_teardown(napi_async_cleanup_hook_handle handle, void *arg) {
	(void)handle;
	Receiver *r = arg;
	r->tearing_down = true;
	receiver_close(r);
}

/*
 * A pending socket error (EPOLLERR): libuv stops a poll handle on it and reports UV_EBADF, which
 * would leave the socket unread for good. The error is consumed (SO_ERROR, and the error queue that
 * IP_RECVERR fills with ICMP errors) and polling resumes. Node's dgram sets no IP_RECVERR, and an
 * unconnected UDP socket gets no error without it; this is the defence for when one does.
 */
static bool receiver_recover(Receiver *r) {
	int error = 0;
	socklen_t length = sizeof error;
	(void)getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &error, &length);
	uint8_t scratch[512];
	for (int i = 0; i < 256; i++) {
		struct iovec iov = {scratch, sizeof scratch};
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
		if (recvmsg(r->fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) break;
	}
	r->errors++;
	return uv_poll_start((uv_poll_t *)r->poll, UV_READABLE, receiver_readable) == 0;
}

static void receiver_readable(uv_poll_t *handle, int status, int events) {
	(void)events;
	Receiver *r = (Receiver *)handle;
	if (r->closing) return;
	if (status < 0 && !receiver_recover(r)) return;
	for (int round = 0; round < RECV_ROUNDS && !r->closing; round++) {
		for (uint32_t i = 0; i < r->capacity; i++) {
			r->msgs[i].msg_hdr.msg_namelen = sizeof r->names[i];
			r->msgs[i].msg_hdr.msg_flags = 0;
		}
		int n = recvmmsg(r->fd, r->msgs, r->capacity, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno == EINTR) continue;
			return; /* EAGAIN: drained; anything else: libuv polls again, as it would for dgram */
		}
		if (n == 0) return;
		for (int i = 0; i < n; i++) {
			int32_t *m = r->meta + (size_t)i * RECV_META;
			const struct mmsghdr *msg = &r->msgs[i];
			m[RECV_LENGTH] = (msg->msg_hdr.msg_flags & MSG_TRUNC) ? -1 : (int32_t)msg->msg_len;
			const struct sockaddr_storage *name = &r->names[i];
			if (name->ss_family == AF_INET6) {
				const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)name;
				m[RECV_PORT] = ntohs(a->sin6_port);
				m[RECV_FAMILY] = 6;
				memcpy(&m[RECV_ADDR], &a->sin6_addr, 16);
			} else if (name->ss_family == AF_INET) {
				const struct sockaddr_in *a = (const struct sockaddr_in *)name;
				m[RECV_PORT] = ntohs(a->sin_port);
				m[RECV_FAMILY] = 4;
				memcpy(&m[RECV_ADDR], &a->sin_addr, 4);
				m[RECV_ADDR + 1] = m[RECV_ADDR + 2] = m[RECV_ADDR + 3] = 0;
			} else {
				m[RECV_LENGTH] = -1; /* not an IP source: cannot be answered */
				m[RECV_PORT] = m[RECV_FAMILY] = 0;
			}
		}
		napi_env env = r->env;
		napi_handle_scope scope;
		if (napi_open_handle_scope(env, &scope) != napi_ok) return;
		napi_value fn, resource, count, result;
		if (napi_get_reference_value(env, r->on_batch, &fn) == napi_ok &&
		    napi_get_reference_value(env, r->resource, &resource) == napi_ok &&
		    napi_create_uint32(env, (uint32_t)n, &count) == napi_ok) {
			if (napi_make_callback(env, r->async, resource, fn, 1, &count, &result) == napi_pending_exception) {
				/* onBatch threw: report it as Node reports an exception thrown by a 'message' listener. */
				napi_value error;
				if (napi_get_and_clear_last_exception(env, &error) == napi_ok) napi_fatal_exception(env, error);
			}
		}
		napi_close_handle_scope(env, scope);
		if ((uint32_t)n < r->capacity) return;
	}
}

/* recvStart(fd, slots, slotSize, meta, onBatch) -> receiver id (see above) */
static napi_value RecvStart(napi_env env, napi_callback_info info) {
	size_t argc = 5;
	napi_value args[5];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, NULL, NULL));
	if (argc < 5) return throw_type(env, "recvStart(fd, slots, slotSize, meta, onBatch)");
	Instance *inst = instance_of(env);
	if (inst == NULL) {
		throw_pending_or(env, "udp addon: instance data missing");
		return NULL;
	}
	int64_t fd, slot_size;
	void *slots, *meta;
	size_t slots_length, meta_length;
	napi_valuetype type;
	if (!get_integer(env, args[0], "fd", 0, INT32_MAX, &fd)) return NULL;
	if (!get_typed_array(env, args[1], "slots", napi_uint8_array, &slots, &slots_length)) return NULL;
	if (!get_integer(env, args[2], "slotSize", 1, 65536, &slot_size)) return NULL;
	if (!get_typed_array(env, args[3], "meta", napi_int32_array, &meta, &meta_length)) return NULL;
	NAPI_CALL(env, napi_typeof(env, args[4], &type));
	if (type != napi_function) return throw_type(env, "onBatch must be a function");
	size_t capacity = slots_length / (size_t)slot_size;
	if (capacity > MAX_RECV_BATCH) capacity = MAX_RECV_BATCH;
	if (capacity == 0) return throw_range(env, "slots must hold at least one slot");
	if (meta_length < capacity * RECV_META) return throw_range(env, "meta must hold RECV_META entries per slot");

	uv_loop_t *loop;
	NAPI_CALL(env, napi_get_uv_event_loop(env, (struct uv_loop_s **)&loop));
	Receiver *r = calloc(1, sizeof *r);
	if (r == NULL) {
		napi_throw_error(env, NULL, "udp addon: out of memory");
		return NULL;
	}
	r->fd = fcntl((int)fd, F_DUPFD_CLOEXEC, 0);
	if (r->fd < 0) {
		char message[96];
		snprintf(message, sizeof message, "recvStart: dup of fd %lld failed: %s", (long long)fd, strerror(errno));
		free(r);
		napi_throw_error(env, NULL, message);
		return NULL;
	}
	r->env = env;
	r->slots = slots;
	r->slot_size = (size_t)slot_size;
	r->capacity = (uint32_t)capacity;
	r->meta = meta;
	for (uint32_t i = 0; i < r->capacity; i++) {
		r->iovs[i].iov_base = r->slots + (size_t)i * r->slot_size;
		r->iovs[i].iov_len = r->slot_size;
		r->msgs[i].msg_hdr.msg_iov = &r->iovs[i];
		r->msgs[i].msg_hdr.msg_iovlen = 1;
		r->msgs[i].msg_hdr.msg_name = &r->names[i];
	}
	napi_value resource_name, resource;
	bool ok = uv_poll_init(loop, (uv_poll_t *)r->poll, r->fd) == 0;
	if (!ok) {
		close(r->fd);
		free(r);
		napi_throw_error(env, NULL, "recvStart: uv_poll_init failed");
		return NULL;
	}
	/* From here on the handle is in the loop: every failure path closes it (receiver_closed frees). */
	ok = napi_create_object(env, &resource) == napi_ok &&
	     napi_create_string_utf8(env, "moq-fanout:udp-recv", NAPI_AUTO_LENGTH, &resource_name) == napi_ok &&
	     napi_async_init(env, resource, resource_name, &r->async) == napi_ok &&
	     napi_create_reference(env, resource, 1, &r->resource) == napi_ok &&
	     napi_create_reference(env, args[4], 1, &r->on_batch) == napi_ok &&
	     napi_create_reference(env, args[1], 1, &r->slots_ref) == napi_ok &&
	     napi_create_reference(env, args[3], 1, &r->meta_ref) == napi_ok &&
	     napi_add_async_cleanup_hook(env, receiver_teardown, r, &r->cleanup) == napi_ok;
	if (ok) ok = uv_poll_start((uv_poll_t *)r->poll, UV_READABLE, receiver_readable) == 0;
	if (!ok) {
		/* Not in the receiver list yet: closing drops what was made so far and frees it. */
		receiver_close(r);
		throw_pending_or(env, "recvStart: could not start polling");
		return NULL;
	}
	r->id = ++inst->next_receiver_id;
	r->next = inst->receivers;
	inst->receivers = r;
	napi_value id;
	NAPI_CALL(env, napi_create_uint32(env, r->id, &id));
	return id;
}

/* The receiver `id` of this environment (closing or not), or NULL. */
static Receiver *find_receiver(napi_env env, uint32_t id) {
	Receiver **head = receivers_of(env);
	for (Receiver *r = head != NULL ? *head : NULL; r != NULL; r = r->next)
		if (r->id == id) return r;
	return NULL;
}

/* recvStop(id): stops and closes the receiver (its dup of the fd); unknown ids are ignored. */
static napi_value RecvStop(napi_env env, napi_callback_info info) {
	size_t argc = 1;
	napi_value args[1];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, NULL, NULL));
	if (argc < 1) return throw_type(env, "recvStop(id)");
	int64_t id;
	if (!get_integer(env, args[0], "id", 0, UINT32_MAX, &id)) return NULL;
	Receiver *r = find_receiver(env, (uint32_t)id);
	if (r != NULL) receiver_close(r);
	return NULL;
}

/*
 * recvRef(id, ref): whether the receiver keeps the event loop alive (uv_ref / uv_unref), as
 * socket.ref() / unref() decide for dgram's own reading; unknown ids are ignored.
 */
static napi_value RecvRef(napi_env env, napi_callback_info info) {
	size_t argc = 2;
	napi_value args[2];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, NULL, NULL));
	if (argc < 2) return throw_type(env, "recvRef(id, ref)");
	int64_t id;
	bool ref = true;
	if (!get_integer(env, args[0], "id", 0, UINT32_MAX, &id)) return NULL;
	NAPI_CALL(env, napi_get_value_bool(env, args[1], &ref));
	Receiver *r = find_receiver(env, (uint32_t)id);
	if (r != NULL && !r->closing) {
		if (ref) uv_ref((uv_handle_t *)r->poll);
		else uv_unref((uv_handle_t *)r->poll);
	}
	return NULL;
}

/* addressString(meta, index): datagram `index`'s source address as Node's dgram writes it. */
static napi_value AddressString(napi_env env, napi_callback_info info) {
	size_t argc = 2;
	napi_value args[2];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, args, NULL, NULL));
	if (argc < 2) return throw_type(env, "addressString(meta, index)");
	void *data;
	size_t length;
	int64_t index;
	if (!get_typed_array(env, args[0], "meta", napi_int32_array, &data, &length)) return NULL;
	if (!get_integer(env, args[1], "index", 0, MAX_RECV_BATCH - 1, &index)) return NULL;
	if ((size_t)(index + 1) * RECV_META > length) return throw_range(env, "index is past the end of meta");
	const int32_t *m = (const int32_t *)data + index * RECV_META;
	char text[INET6_ADDRSTRLEN];
	int family = m[RECV_FAMILY] == 6 ? AF_INET6 : m[RECV_FAMILY] == 4 ? AF_INET : 0;
	if (family == 0 || inet_ntop(family, &m[RECV_ADDR], text, sizeof text) == NULL) {
		return throw_range(env, "no address at this index");
	}
	napi_value result;
	NAPI_CALL(env, napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &result));
	return result;
}

/* ---- module ---------------------------------------------------------------------------------- */

static void free_instance(napi_env env, void *data, void *hint) {
	(void)env;
	(void)hint;
	Instance *inst = data;
	free(inst->sockets);
	free(inst);
}

static bool set_number(napi_env env, napi_value object, const char *name, double value) {
	napi_value number;
	return napi_create_double(env, value, &number) == napi_ok &&
	       napi_set_named_property(env, object, name, number) == napi_ok;
}

NAPI_MODULE_INIT() {
	Instance *inst = calloc(1, sizeof *inst);
	if (inst == NULL) {
		napi_throw_error(env, NULL, "udp addon: out of memory");
		return NULL;
	}
	if (napi_set_instance_data(env, inst, free_instance, NULL) != napi_ok) {
		free(inst);
		throw_pending_or(env, "udp addon: napi_set_instance_data failed");
		return NULL;
	}
	napi_property_descriptor functions[] = {
	    {"sendBatch", NULL, SendBatch, NULL, NULL, NULL, napi_enumerable, NULL},
	    {"writeSockaddr", NULL, WriteSockaddr, NULL, NULL, NULL, napi_enumerable, NULL},
	    {"forgetSocket", NULL, ForgetSocket, NULL, NULL, NULL, napi_enumerable, NULL},
	    {"gsoEnabled", NULL, GsoEnabled, NULL, NULL, NULL, napi_enumerable, NULL},
	    {"setNoChecksumForTesting", NULL, SetNoChecksumForTesting, NULL, NULL, NULL, napi_enumerable, NULL},
	    {"mallocInfo", NULL, MallocInfo, NULL, NULL, NULL, napi_enumerable, NULL},
	    {"mallocTrim", NULL, MallocTrim, NULL, NULL, NULL, napi_enumerable, NULL},
	    {"receiveQueue", NULL, ReceiveQueue, NULL, NULL, NULL, napi_enumerable, NULL},
	    {"recvStart", NULL, RecvStart, NULL, NULL, NULL, napi_enumerable, NULL},
	    {"recvStop", NULL, RecvStop, NULL, NULL, NULL, napi_enumerable, NULL},
	    {"recvRef", NULL, RecvRef, NULL, NULL, NULL, napi_enumerable, NULL},
	    {"addressString", NULL, AddressString, NULL, NULL, NULL, napi_enumerable, NULL},
	    {"setRecvErrorsForTesting", NULL, SetRecvErrorsForTesting, NULL, NULL, NULL, napi_enumerable, NULL},
	};
	NAPI_CALL(env, napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions));
	napi_value constants;
	NAPI_CALL(env, napi_create_object(env, &constants));
	if (!set_number(env, constants, "abiVersion", ABI_VERSION) ||
	    !set_number(env, constants, "maxBatchPackets", MAX_BATCH_PACKETS) ||
	    !set_number(env, constants, "maxGsoSegments", MAX_GSO_SEGMENTS) ||
	    !set_number(env, constants, "maxGsoBytes", MAX_GSO_BYTES) ||
	    !set_number(env, constants, "addressStride", ADDRESS_STRIDE) ||
	    !set_number(env, constants, "flagGso", FLAG_GSO) || !set_number(env, constants, "outSlots", OUT_SLOTS) ||
	    !set_number(env, constants, "stopWouldBlock", STOP_WOULD_BLOCK) ||
	    !set_number(env, constants, "stopSocketError", STOP_SOCKET_ERROR) ||
	    !set_number(env, constants, "maxRecvBatch", MAX_RECV_BATCH) ||
	    !set_number(env, constants, "recvMeta", RECV_META)) {
		throw_pending_or(env, "udp addon: constants");
		return NULL;
	}
	NAPI_CALL(env, napi_set_named_property(env, exports, "constants", constants));
	return exports;
}
