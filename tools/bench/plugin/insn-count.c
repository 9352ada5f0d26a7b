/*
 * insn-count: a QEMU TCG plugin (API v1, QEMU 7.2) that counts the
 * instructions each vCPU executes, split into three classes by address:
 *   0 "hypervisor": inside the range given as hv=START+LEN (RustHallows' EL2
 *                   image; empty for a run without the hypervisor),
 *   1 "kernel":     any address with bit 63 set (Linux's kernel half),
 *   2 "other":      everything else (Linux user space, RustHallows guests).
 *
 * Windows are marked by the guest itself: each time any vCPU executes the
 * marker instruction `hint #0x7f` (0xd5032fff, an unallocated hint that
 * the architecture defines as a NOP, so it does nothing anywhere else) the
 * plugin appends one line to out=FILE and flushes it:
 *   mark SEQ VCPU c0.hv c0.kernel c0.other c1.hv ...   (cumulative counts)
 * The bench tools take the differences between marks.
 *
 * With profile=SEQ,pfile=FILE it also counts, per vCPU and block start
 * address, the instructions executed between marks SEQ and SEQ+1, and
 * writes them to FILE at mark SEQ+1 (`pc VCPU ADDR COUNT` lines), for
 * attributing a window to functions.
 *
 * Counting is per translation block, added when the block starts (the
 * API v1 way): a block cut short by an exception counts its whole length.
 * Under -icount shift=0,sleep=off the same image executes the same blocks,
 * so the counts repeat bit for bit.
 *
 * The plugin only reads instruction addresses and bytes; a guest can do
 * nothing with it but add lines to the file. It is loaded only by the
 * bench tools, never by `hallows run` (which refuses -plugin).
 *
 * Declared by hand (Debian ships QEMU without qemu-plugin.h); the
 * prototypes are those of QEMU 7.2's include/qemu/qemu-plugin.h.
 * Build: gcc -O2 -shared -fPIC -o insn-count.so insn-count.c
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

#define MAX_VCPUS 16
#define CLASSES 3
#define MARKER 0xd5032fffu

static uint64_t counts[MAX_VCPUS][CLASSES];
static uint64_t hv_start, hv_end;
static FILE *out;
static unsigned long seq;
static long profile_seq = -1;
static const char *profile_file;
static int profiling;

/* The profile: open addressing on (vcpu, block address). */
#define SLOTS (1u << 20)
struct slot { uint64_t pc; uint32_t vcpu; uint32_t used; uint64_t n; };
static struct slot *table;

static void profile_add(unsigned int vcpu, uint64_t pc, uint64_t n)
{
    uint64_t h = (pc * 0x9e3779b97f4a7c15ull) ^ vcpu;
    for (uint32_t i = 0; i < SLOTS; i++) {
        struct slot *s = &table[(h + i) & (SLOTS - 1)];
        if (!s->used) {
            s->used = 1; s->pc = pc; s->vcpu = vcpu; s->n = n;
            return;
        }
        if (s->pc == pc && s->vcpu == vcpu) {
            s->n += n;
            return;
        }
    }
}

struct tbinfo { uint64_t pc; uint64_t n; unsigned class; };

static void tb_exec(unsigned int vcpu, void *udata)
{
    const struct tbinfo *t = udata;
    if (vcpu < MAX_VCPUS)
        counts[vcpu][t->class] += t->n;
    if (profiling)
        profile_add(vcpu, t->pc, t->n);
}

static void mark(unsigned int vcpu, void *udata)
{
    (void)udata;
    if (!out)
        return;
    fprintf(out, "mark %lu %u", seq++, vcpu);
    for (int c = 0; c < MAX_VCPUS; c++)
        for (int k = 0; k < CLASSES; k++)
            fprintf(out, " %llu", (unsigned long long)counts[c][k]);
    fputc('\n', out);
    fflush(out);
    if (profile_file && (long)seq - 1 == profile_seq) {
        profiling = 1;
    } else if (profile_file && profiling) {
        profiling = 0;
        FILE *p = fopen(profile_file, "w");
        if (p) {
            for (uint32_t i = 0; i < SLOTS; i++)
                if (table[i].used)
                    fprintf(p, "pc %u 0x%llx %llu\n", table[i].vcpu, (unsigned long long)table[i].pc, (unsigned long long)table[i].n);
            fclose(p);
        }
    }
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    uint64_t pc = qemu_plugin_tb_vaddr(tb);
    size_t n = qemu_plugin_tb_n_insns(tb);
    /* One record per translation, never freed: QEMU keeps the
     * callback's pointer as long as the block exists. */
    struct tbinfo *t = malloc(sizeof *t);
    if (!t)
        return;
    t->pc = pc;
    t->n = n;
    t->class = (pc >= hv_start && pc < hv_end) ? 0 : (pc >> 63) ? 1 : 2;
    qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS, t);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint32_t word;
        if (qemu_plugin_insn_size(insn) != 4)
            continue;
        memcpy(&word, qemu_plugin_insn_data(insn), 4);
        if (word == MARKER)
            qemu_plugin_register_vcpu_insn_exec_cb(insn, mark, QEMU_PLUGIN_CB_NO_REGS, NULL);
    }
}

static void at_exit(qemu_plugin_id_t id, void *udata)
{
    (void)id;
    (void)udata;
    if (out) {
        fprintf(out, "exit");
        for (int c = 0; c < MAX_VCPUS; c++)
            for (int k = 0; k < CLASSES; k++)
                fprintf(out, " %llu", (unsigned long long)counts[c][k]);
        fputc('\n', out);
        fclose(out);
        out = NULL;
    }
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                                               char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            out = fopen(argv[i] + 4, "w");
            if (!out) {
                fprintf(stderr, "insn-count: cannot write %s\n", argv[i] + 4);
                return -1;
            }
        } else if (strncmp(argv[i], "hv=", 3) == 0) {
            char *plus;
            hv_start = strtoull(argv[i] + 3, &plus, 0);
            if (*plus != '+') {
                fprintf(stderr, "insn-count: hv=START+LEN expected, got %s\n", argv[i]);
                return -1;
            }
            hv_end = hv_start + strtoull(plus + 1, NULL, 0);
        } else if (strncmp(argv[i], "profile=", 8) == 0) {
            profile_seq = strtol(argv[i] + 8, NULL, 0);
        } else if (strncmp(argv[i], "pfile=", 6) == 0) {
            profile_file = argv[i] + 6;
        } else {
            fprintf(stderr, "insn-count: unknown argument %s (out=FILE, hv=START+LEN, profile=SEQ, pfile=FILE)\n", argv[i]);
            return -1;
        }
    }
    if (!out) {
        fprintf(stderr, "insn-count: out=FILE is required\n");
        return -1;
    }
    if (profile_file && profile_seq >= 0) {
        table = calloc(SLOTS, sizeof *table);
        if (!table)
            return -1;
    } else {
        profile_file = NULL;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
