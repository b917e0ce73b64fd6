/*
 * implant_sim.c - INERT TEST MATERIAL for layerhound's detector tests.
 *
 * This is the layerhound project's own code; it contains no code from the
 * xz backdoor or any other third party. It hooks nothing real, patches no
 * other library, reads no environment and talks to no one. It only
 * reproduces, for tests, the shape and the byte patterns that public
 * analyses of CVE-2024-3094 documented:
 *
 *   - a shared library exporting lzma_crc32 and lzma_crc64 as GNU IFUNC
 *     symbols, whose resolvers pass pointers into their own stack frame to a
 *     local, non-exported _get_cpuid helper (the hook point the implant used);
 *   - _get_cpuid calls further hidden code (lh_sim_stage) that counts its
 *     invocations in a .bss variable and, on the second one, temporarily
 *     overwrites a GOT slot and calls through it. The slot is the one of this
 *     library's own harmless lh_sim_probe(); the stand-in put there is this
 *     library's own harmless lh_sim_stand_in(); the original is restored
 *     right after. Nothing outside this file is ever touched or called;
 *   - an import of __tls_get_addr that is only referenced through a data
 *     pointer (no thread-local storage is used anywhere);
 *   - with -DWITH_UNWIND_GAP, a large region of code without unwind
 *     information (lh_sim_table_code: tens of KB of arithmetic that nothing
 *     calls). Opt-in, so the default build stays a small library;
 *   - the DT_NEEDED entry on ld-linux-x86-64.so.2 comes from the link flag
 *     (tests/support/compile.py: ld_linux=True), not from this file;
 *   - optionally, the published signature byte sequences, emitted as raw
 *     .byte data into .text by top-level asm blocks. Those bytes are never
 *     referenced or executed.
 *
 * Variants, chosen with preprocessor macros:
 *   (none)               the structure above (no unwind gap), no signature bytes
 *   -DWITH_PROLOGUE      + the published _get_cpuid prologue bytes
 *   -DWITH_YARA          + all three opcode sequences of the public YARA rule
 *   -DWITH_YARA_PARTIAL  + only the first two of those sequences
 *   -DNO_HOOK            _get_cpuid is an honest cpuid helper: no hidden
 *                        stage, no .bss counter, no GOT write
 *   -DNO_TLS_REF         no __tls_get_addr import
 *   -DWITH_UNWIND_GAP    + tens of KB of code without unwind information
 *   -DSTAGE_HOPS=N       (N = 1 or 2) the hidden stage is reached through N
 *                        more local calls, so it sits N calls deeper
 *   -DDECOY_CALLS=N      (N <= 32) _get_cpuid first calls N small local
 *                        functions, so the stage is the (N+2)th function
 *                        a breadth-first walk reaches
 * The last two exist to test the structure walk's depth and function bounds.
 */

#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

typedef uint32_t (*crc32_func)(const uint8_t *buf, size_t size, uint32_t crc);
typedef uint64_t (*crc64_func)(const uint8_t *buf, size_t size, uint64_t crc);

#ifndef NO_TLS_REF
/*
 * Imported from ld.so but never called: a library that uses no TLS has no
 * reason to import it. "used" keeps the reference (and so the import).
 */
extern void *__tls_get_addr(void *descriptor);
static void *(*const volatile lh_sim_tls_ref)(void *) __attribute__((used)) = __tls_get_addr;
#endif

/* Exported, harmless: its GOT slot is the one the hidden stage borrows. */
__attribute__((visibility("default"), noinline)) int lh_sim_probe(void)
{
	return 0;
}

#if !defined(NO_HOOK) && defined(__x86_64__)
/* Harmless stand-in the hidden stage puts into the GOT slot for one call. */
static __attribute__((noinline, noclone, used)) int lh_sim_stand_in(void)
{
	return 1;
}

/* Invocation counter in .bss, like the implant's. */
static volatile unsigned long lh_sim_calls;

/*
 * The hidden stage: on its second invocation, swap this library's own GOT
 * slot of lh_sim_probe for lh_sim_stand_in, call through the slot, restore.
 * The slot address comes from a lea of lh_sim_probe@GOTPCREL (the address
 * of the slot, not its contents).
 */
static __attribute__((noinline, noclone)) int lh_sim_stage(void)
{
	int (*volatile *slot)(void);
	int (*saved)(void);
	int result;

	if (++lh_sim_calls != 2)
		return 0;
	__asm__("leaq lh_sim_probe@GOTPCREL(%%rip), %0" : "=r"(slot));
	saved = *slot;
	*slot = lh_sim_stand_in;
	result = (*slot)();
	*slot = saved;
	return result;
}

/* Local hops in front of the stage (STAGE_HOPS); never tail calls, so each is a call. */
#if defined(STAGE_HOPS) && STAGE_HOPS >= 1
static __attribute__((noinline, noclone, optimize("no-optimize-sibling-calls"))) int lh_sim_hop_1(void)
{
	return lh_sim_stage();
}
#endif
#if defined(STAGE_HOPS) && STAGE_HOPS >= 2
static __attribute__((noinline, noclone, optimize("no-optimize-sibling-calls"))) int lh_sim_hop_2(void)
{
	return lh_sim_hop_1();
}
#define LH_SIM_ENTER lh_sim_hop_2
#elif defined(STAGE_HOPS) && STAGE_HOPS >= 1
#define LH_SIM_ENTER lh_sim_hop_1
#else
#define LH_SIM_ENTER lh_sim_stage
#endif

/*
 * DECOY_CALLS small local functions, each different (so identical-code folding
 * keeps them apart) and each with a side effect (so every call stays, in order).
 */
#ifdef DECOY_CALLS
static volatile unsigned long lh_sim_sink = 1; /* .data: not a .bss counter */
#define LH_DECOY(a, b) \
	static __attribute__((noinline, noclone)) void lh_sim_decoy_##a##b(void) { lh_sim_sink += 8 * a + b + 1; }
#define LH_DECOY8(a) LH_DECOY(a, 0) LH_DECOY(a, 1) LH_DECOY(a, 2) LH_DECOY(a, 3) \
	LH_DECOY(a, 4) LH_DECOY(a, 5) LH_DECOY(a, 6) LH_DECOY(a, 7)
LH_DECOY8(0) LH_DECOY8(1) LH_DECOY8(2) LH_DECOY8(3)
#define LH_CALL(a, b) if (DECOY_CALLS > 8 * a + b) lh_sim_decoy_##a##b();
#define LH_CALL8(a) LH_CALL(a, 0) LH_CALL(a, 1) LH_CALL(a, 2) LH_CALL(a, 3) \
	LH_CALL(a, 4) LH_CALL(a, 5) LH_CALL(a, 6) LH_CALL(a, 7)
#define LH_SIM_DECOYS() do { LH_CALL8(0) LH_CALL8(1) LH_CALL8(2) LH_CALL8(3) } while (0)
#else
#define LH_SIM_DECOYS() do { } while (0)
#endif
#endif

/*
 * Feature probe used by both resolvers; local, like the implant's hook point.
 * noclone keeps its symbol name intact (no _get_cpuid.constprop.0 clone).
 * The outputs point into the resolver's stack frame.
 */
static __attribute__((noinline, noclone)) int _get_cpuid(uint32_t leaf, uint32_t *eax, uint32_t *ebx,
							  uint32_t *ecx, uint32_t *edx)
{
#if !defined(NO_HOOK) && defined(__x86_64__)
	LH_SIM_DECOYS();
	if (LH_SIM_ENTER() < 0)
		return 0;
#endif
#if defined(__x86_64__) || defined(__i386__)
	return __get_cpuid(leaf, eax, ebx, ecx, edx);
#else
	(void)leaf;
	*eax = *ebx = *ecx = *edx = 0;
	return 0;
#endif
}

static uint32_t crc32_bitwise(const uint8_t *buf, size_t size, uint32_t crc)
{
	crc = ~crc;
	while (size--) {
		crc ^= *buf++;
		for (int i = 0; i < 8; i++)
			crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
	}
	return ~crc;
}

/* Same result, different code: stands in for a CLMUL implementation. */
static uint32_t crc32_unrolled(const uint8_t *buf, size_t size, uint32_t crc)
{
	crc = ~crc;
	while (size--) {
		crc ^= *buf++;
#pragma GCC unroll 8
		for (int i = 0; i < 8; i++)
			crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
	}
	return ~crc;
}

static uint64_t crc64_bitwise(const uint8_t *buf, size_t size, uint64_t crc)
{
	crc = ~crc;
	while (size--) {
		crc ^= *buf++;
		for (int i = 0; i < 8; i++)
			crc = (crc >> 1) ^ (0xC96C5795D7870F42ull & (0ull - (crc & 1ull)));
	}
	return ~crc;
}

static uint64_t crc64_unrolled(const uint8_t *buf, size_t size, uint64_t crc)
{
	crc = ~crc;
	while (size--) {
		crc ^= *buf++;
#pragma GCC unroll 8
		for (int i = 0; i < 8; i++)
			crc = (crc >> 1) ^ (0xC96C5795D7870F42ull & (0ull - (crc & 1ull)));
	}
	return ~crc;
}

#define ECX_PCLMUL (1u << 1)

static crc32_func resolve_crc32(void)
{
	uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
	if (_get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & ECX_PCLMUL))
		return crc32_unrolled;
	return crc32_bitwise;
}

static crc64_func resolve_crc64(void)
{
	uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
	if (_get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & ECX_PCLMUL))
		return crc64_unrolled;
	return crc64_bitwise;
}

__attribute__((visibility("default"), ifunc("resolve_crc32")))
uint32_t lzma_crc32(const uint8_t *buf, size_t size, uint32_t crc);

__attribute__((visibility("default"), ifunc("resolve_crc64")))
uint64_t lzma_crc64(const uint8_t *buf, size_t size, uint64_t crc);

#if defined(WITH_UNWIND_GAP) && defined(__x86_64__)
/*
 * Tens of KB of code that no .eh_frame entry covers (no .cfi directives),
 * like the implant's hidden code. It is plain register arithmetic, nothing
 * calls it, and it carries no strings.
 */
__asm__(
	".pushsection .text\n"
	".p2align 4\n"
	".type lh_sim_table_code, @function\n"
	"lh_sim_table_code:\n"
	".rept 2048\n"
	"\taddl $0x9e3779b9, %eax\n"
	"\troll $5, %eax\n"
	"\txorl %eax, %edx\n"
	"\timull $0x85ebca6b, %edx, %edx\n"
	".endr\n"
	"\tmovl %edx, %eax\n"
	"\tret\n"
	".size lh_sim_table_code, .-lh_sim_table_code\n"
	".popsection\n");
#endif

/*
 * Signature bytes as inert data in .text. The wildcard bytes of the YARA
 * rule's first sequence are filled with zeros.
 */
#ifdef WITH_PROLOGUE
__asm__(
	".pushsection .text\n"
	".byte 0xf3,0x0f,0x1e,0xfa,0x55,0x48,0x89,0xf5,0x4c,0x89,0xce,0x53\n"
	".byte 0x89,0xfb,0x81,0xe7,0x00,0x00,0x00,0x80,0x48,0x83,0xec,0x28\n"
	".byte 0x48,0x89,0x54,0x24,0x18,0x48,0x89,0x4c,0x24,0x10\n"
	".popsection\n");
#endif

#if defined(WITH_YARA) || defined(WITH_YARA_PARTIAL)
__asm__(
	".pushsection .text\n"
	/* op1 */
	".byte 0x48,0x8d,0x7c,0x24,0x08,0xf3,0xab,0x48,0x8d,0x44,0x24,0x08\n"
	".byte 0x48,0x89,0xd1,0x4c,0x89,0xc7,0x48,0x89,0xc2,0xe8\n"
	".byte 0x00,0x00,0x00,0x00,0x89,0xc2\n"
	/* op2 */
	".byte 0x31,0xc0,0x49,0x89,0xff,0xb9,0x16,0x00,0x00,0x00,0x4d,0x89\n"
	".byte 0xc5,0x48,0x8d,0x7c,0x24,0x48,0x4d,0x89,0xce,0xf3,0xab,0x48\n"
	".byte 0x8d,0x44,0x24,0x48\n"
	".popsection\n");
#endif

#ifdef WITH_YARA
__asm__(
	".pushsection .text\n"
	/* op3 */
	".byte 0x4d,0x8b,0x6c,0x24,0x08,0x45,0x8b,0x3c,0x24,0x4c,0x8b,0x63\n"
	".byte 0x10,0x89,0x85,0x78,0xf1,0xff,0xff,0x31,0xc0,0x83,0xbd,0x78\n"
	".byte 0xf1,0xff,0xff,0x00,0xf3,0xab,0x79,0x07\n"
	".popsection\n");
#endif
