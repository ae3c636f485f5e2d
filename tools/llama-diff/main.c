/* main.c: llama-diff, a thin command-line front over libllamaref that tells where a
 * Llama implementation diverges from ground truth. This file parses the command line,
 * picks the default job and dispatches to one file per command (check.c, dump.c,
 * compare.c, backends.c, info.c, convert.c).
 * Exit status: 0 agree (or success), 1 diverge, 2 bad input or usage. */
#include "diff.h"
#include "rounding.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_MODEL "models/gqa-f32"
#define DEFAULT_FIXTURE "golden/gqa-f32-batch.safetensors"

static void usage(FILE *fp) {
    fputs("usage: llama-diff [COMMAND] [OPTIONS]\n"
          "\n"
          "Tells where a Llama-family forward pass diverges from ground truth.\n"
          "\n"
          "Commands:\n"
          "  check   run a backend on a golden fixture's inputs and compare every stage\n"
          "  dump    run a backend and write every stage as a llama-golden/1 file\n"
          "  compare DUMP... GOLDEN\n"
          "          dumps (llama-golden/1) of the same inputs: DUMP under test (several: one per\n"
          "          tensor-parallel rank, --names vllm), the last file the reference\n"
          "  backends --a BACKEND[:P] --b BACKEND[:P]\n"
          "          run two backends on one input (--fixture or --tokens), B against A\n"
          "  info    print the parsed config and each rank's packed, sharded tensors\n"
          "  convert --gguf FILE --out DIR\n"
          "          write a GGUF model (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q2_K..Q6_K, Q8_K) as a\n"
          "          Hugging Face checkpoint: DIR/config.json and DIR/model.safetensors,\n"
          "          dequantized to F32\n"
          "  ops     sweep every registered CUDA kernel variant op by op against the reference\n"
          "          ops (llama-diff ops --help for its options); ops --list: the kernel families\n"
          "          and variants (in-tree and plugins'), the dtypes each takes, its rounding,\n"
          "          where it comes from\n"
          "  (none)  check the bundled default model and fixture\n"
          "\n"
          "Options:\n"
          "  -m, --model PATH         Hugging Face checkpoint directory, or a .gguf file; compare:\n"
          "                           the model the dumps are of, whose error model scales the\n"
          "                           budgets as check does (without it they are unscaled)\n"
          "      --gguf FILE          convert: the GGUF file to read\n"
          "  -f, --fixture FILE       golden fixture (llama-golden/1 safetensors)\n"
          "  -t, --tokens \"1 2 3\"     token ids of one sequence (dump), instead of a fixture\n"
          "  -o, --out PATH           output file (dump) or directory (convert); existing files\n"
          "                           are never overwritten without --force\n"
          "  -b, --backend NAME       cpu (default) or cuda\n"
          "  -p, --precision P        cpu: f64 (default), f32, bf16 or fp16 (bf16, fp16: float32\n"
          "                           rounded as cuda rounds); cuda: bf16 (default), fp16 or fp32\n"
          "      --tp N               tensor-parallel size (default 1)\n"
          "      --threads N          BLAS threads of a run on the CPU (default 1: bitwise reproducible)\n"
          "      --memory SIZE        cpu: converted weights held at once (e.g. 512M, 2G; default a tenth\n"
          "                           of physical memory); beyond it each layer's weights are\n"
          "                           converted when it runs, the embedding and LM head by rows. The\n"
          "                           numbers do not change\n"
          "      --devices N          cuda: GPUs for the tp ranks (default: tp GPUs over NCCL when\n"
          "                           present, else all ranks on one GPU; 1 forces one GPU)\n"
          "      --cuda-graphs        cuda: run decode steps (one token per sequence) as CUDA graphs,\n"
          "                           captured once per batch shape (off by default). A step whose\n"
          "                           stages are observed (every stage these commands compare),\n"
          "                           isolated, faulted or profiled runs eagerly: here it checks\n"
          "                           that the option and its eager fallback change no number\n"
          "                           (docs/performance.md, \"Decode with CUDA graphs\")\n"
          "  -k, --kernel FAM=NAME    cuda: kernel variant for an op family (repeatable); checked\n"
          "                           (family, variant, dtype) before any GPU is opened\n"
          "      --plugin LIB.so      cuda: load a kernel plugin, whose variants --kernel can then\n"
          "                           name (repeatable; docs/adding-a-kernel.md)\n"
          "      --a, --b SPEC        backends: cpu:f64, cpu:f32, cpu:bf16, cpu:fp16, cuda:bf16,\n"
          "                           cuda:fp16, cuda:fp32,\n"
          "                           then optionally ,tp=N and ,devices=N for that side alone\n"
          "                           (e.g. --a cuda:bf16,tp=1 --b cuda:bf16 --tp 2)\n"
          "      --decode K           check: prefill all but K tokens of each sequence, then K\n"
          "                           single-token steps through the KV cache, each compared\n"
          "      --isolate [layer|op] check: feed every layer (layer, the default) or every op (op)\n"
          "                           the fixture's input to it, rounded to the backend's dtype, so\n"
          "                           each one's own error shows, not the error it inherits\n"
          "                           (single-layer or single-op budgets; with --decode, every step)\n"
          "      --inject STAGE=KIND:EPS[:SEED]\n"
          "                           check, dump, backends (side b): perturb the output of the op\n"
          "                           that computes STAGE, in place (repeatable); KIND scale (x 1+EPS),\n"
          "                           element (last feature of each token x 1+EPS) or noise (x 1+EPS u,\n"
          "                           u seeded, RMS 1); or change how the op computes: theta,\n"
          "                           rms_eps (rope_theta, rms_norm_eps x 1+EPS), mask (off by EPS,\n"
          "                           +-1), stale_kv (--decode: entries EPS back), swap_heads (EPS,\n"
          "                           EPS+1): what the checks catch (docs/detection.md)\n"
          "      --stages PATTERN     compare: only the golden stages matching PATTERN (a shell\n"
          "                           pattern, e.g. 'model.layers.1.*'); without it every golden\n"
          "                           stage must be in the dump under test\n"
          "      --names hf|vllm|llama.cpp\n"
          "                           compare: how the dump under test names its stages (default\n"
          "                           hf); vllm and llama.cpp need --model (docs/llama-diff.md)\n"
          "      --rounding NAME      compare --model, a bf16/fp16 dump: where its engine rounds, for\n"
          "                           the same-precision verdict: cuda (the rounding map),\n"
          "                           transformers (Hugging Face on the CPU, sdpa) or\n"
          "                           transformers-eager; overrides the dump's rounding metadata.\n"
          "                           A named profile holds every op to the tight budget (no\n"
          "                           rounding more allowed)\n"
          "      --json               print one JSON document instead of text\n"
          "      --report FILE        check, compare, backends: also write a self-contained HTML\n"
          "                           report (charts per stage and per layer, table, drill-down)\n"
          "      --force              let dump, convert or --report replace an existing output file\n"
          "  -q, --quiet              no progress lines on stderr (shown once a run takes over 1.5 s)\n"
          "  -h, --help               this help\n"
          "  -V, --version            version\n"
          "\n"
          "\n"
          "With no command and no --model, the default job checks SmolLM2-135M-Instruct (Q4_1 GGUF)\n"
          "when $LLAMAREF_CACHE (default $XDG_CACHE_HOME/llamaref or ~/.cache/llamaref) holds\n"
          "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf and the fixtures hold\n"
          "golden/smollm2-135m.safetensors; otherwise the bundled gqa-f32 model and fixture.\n"
          "\n"
          "An option a command does not use is an error, not ignored.\n"
          "Exit status: 0 all stages agree, 1 a stage diverges, 2 bad input or usage.\n",
          fp);
}

/* The commands that use each option. Any other command refuses it, naming the option and
 * the command: nothing given on a command line is silently ignored. */
enum {
    U_CHECK = 1,
    U_DUMP = 2,
    U_COMPARE = 4,
    U_BACKENDS = 8,
    U_INFO = 16,
    U_CONVERT = 32,
    U_OPS = 64 /* parses its own options (ops.c); this table says which of these it takes */
};
static const char *const use_names[] = {"check", "dump", "compare", "backends", "info", "convert", "ops"};

enum {
    OPT_TP = 256,
    OPT_THREADS,
    OPT_JSON,
    OPT_FORCE,
    OPT_DEVICES,
    OPT_A,
    OPT_B,
    OPT_ISOLATE,
    OPT_DECODE,
    OPT_REPORT,
    OPT_GGUF,
    OPT_INJECT,
    OPT_STAGES,
    OPT_NAMES,
    OPT_PLUGIN,
    OPT_MEMORY,
    OPT_CUDA_GRAPHS,
    OPT_ROUNDING
};

static const struct {
    int code; /* getopt's value */
    const char *name;
    unsigned used_by;
} option_use[] = {
    {'m', "--model", U_CHECK | U_DUMP | U_COMPARE | U_BACKENDS | U_INFO},
    {'f', "--fixture", U_CHECK | U_DUMP | U_BACKENDS},
    {'t', "--tokens", U_DUMP | U_BACKENDS},
    {'o', "--out", U_DUMP | U_CONVERT},
    {'b', "--backend", U_CHECK | U_DUMP},
    {'p', "--precision", U_CHECK | U_DUMP | U_COMPARE},
    {OPT_TP, "--tp", U_CHECK | U_DUMP | U_BACKENDS | U_INFO},
    {OPT_THREADS, "--threads", U_CHECK | U_DUMP | U_BACKENDS},
    {OPT_MEMORY, "--memory", U_CHECK | U_DUMP | U_BACKENDS},
    {OPT_JSON, "--json", U_CHECK | U_DUMP | U_COMPARE | U_BACKENDS | U_INFO | U_CONVERT | U_OPS},
    {OPT_FORCE, "--force", U_CHECK | U_DUMP | U_COMPARE | U_BACKENDS | U_CONVERT},
    {'k', "--kernel", U_CHECK | U_DUMP | U_BACKENDS},
    {OPT_PLUGIN, "--plugin", U_CHECK | U_DUMP | U_BACKENDS | U_OPS},
    {OPT_DEVICES, "--devices", U_CHECK | U_DUMP | U_BACKENDS},
    {OPT_CUDA_GRAPHS, "--cuda-graphs", U_CHECK | U_DUMP | U_BACKENDS},
    {OPT_A, "--a", U_BACKENDS},
    {OPT_B, "--b", U_BACKENDS},
    {OPT_ISOLATE, "--isolate", U_CHECK},
    {OPT_DECODE, "--decode", U_CHECK},
    {OPT_REPORT, "--report", U_CHECK | U_COMPARE | U_BACKENDS},
    {'q', "--quiet", U_CHECK | U_DUMP | U_BACKENDS},
    {OPT_GGUF, "--gguf", U_CONVERT},
    {OPT_INJECT, "--inject", U_CHECK | U_DUMP | U_BACKENDS},
    {OPT_STAGES, "--stages", U_COMPARE},
    {OPT_NAMES, "--names", U_COMPARE},
    {OPT_ROUNDING, "--rounding", U_COMPARE},
};
#define N_OPTION_USE (sizeof option_use / sizeof option_use[0])

/* The command's bit (the default job is check); 0 for a command that does not exist
 * (main reports it). */
static unsigned command_bit(const args *a) {
    if (!a->cmd) return U_CHECK;
    for (size_t i = 0; i < sizeof use_names / sizeof use_names[0]; i++)
        if (is_cmd(a, use_names[i])) return 1u << i;
    return 0;
}

/* "--tp: compare does not use it (an option of check, dump, backends and info)". */
static int refuse(size_t i, const char *cmd) {
    char list[128] = "";
    size_t used = 0, k = 0, n = 0;
    for (size_t j = 0; j < sizeof use_names / sizeof use_names[0]; j++)
        n += !!(option_use[i].used_by & (1u << j));
    for (size_t j = 0; j < sizeof use_names / sizeof use_names[0]; j++) {
        if (!(option_use[i].used_by & (1u << j))) continue;
        k++;
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s",
                                 k == 1   ? ""
                                 : k == n ? " and "
                                          : ", ",
                                 use_names[j]);
    }
    return bad("%s: %s does not use it (an option of %s)", option_use[i].name, cmd, list);
}

static int refuse_unused(const args *a, const bool *given) {
    unsigned cmd = command_bit(a);
    if (!cmd) return 0;
    for (size_t i = 0; i < N_OPTION_USE; i++)
        if (given[i] && !(option_use[i].used_by & cmd)) return refuse(i, a->cmd ? a->cmd : "check");
    return 0;
}

int refuse_option(const char *cmd, const char *opt) {
    size_t len = strcspn(opt, "=");
    for (size_t i = 0; i < N_OPTION_USE; i++) {
        const char *name = option_use[i].name;
        bool is_short =
            opt[0] == '-' && opt[1] != '-' && option_use[i].code < 256 && opt[1] == option_use[i].code;
        bool is_long = strlen(name) == len && strncmp(name, opt, len) == 0;
        if (is_short || is_long) return refuse(i, cmd);
    }
    return 0;
}

static int parse_args(int argc, char **argv, args *a) {
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"fixture", required_argument, NULL, 'f'},
        {"tokens", required_argument, NULL, 't'},
        {"out", required_argument, NULL, 'o'},
        {"backend", required_argument, NULL, 'b'},
        {"precision", required_argument, NULL, 'p'},
        {"tp", required_argument, NULL, OPT_TP},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"memory", required_argument, NULL, OPT_MEMORY},
        {"json", no_argument, NULL, OPT_JSON},
        {"force", no_argument, NULL, OPT_FORCE},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"kernel", required_argument, NULL, 'k'},
        {"devices", required_argument, NULL, OPT_DEVICES},
        {"cuda-graphs", no_argument, NULL, OPT_CUDA_GRAPHS},
        {"a", required_argument, NULL, OPT_A},
        {"b", required_argument, NULL, OPT_B},
        {"isolate", optional_argument, NULL, OPT_ISOLATE},
        {"decode", required_argument, NULL, OPT_DECODE},
        {"report", required_argument, NULL, OPT_REPORT},
        {"quiet", no_argument, NULL, 'q'},
        {"gguf", required_argument, NULL, OPT_GGUF},
        {"inject", required_argument, NULL, OPT_INJECT},
        {"stages", required_argument, NULL, OPT_STAGES},
        {"names", required_argument, NULL, OPT_NAMES},
        {"plugin", required_argument, NULL, OPT_PLUGIN},
        {"rounding", required_argument, NULL, OPT_ROUNDING},
        {NULL, 0, NULL, 0},
    };
    bool given[N_OPTION_USE] = {0};
    lr_options_init(&a->opt);
    a->opt.cpu_f64_products = getenv("LR_CPU_F64_PRODUCTS") && strcmp(getenv("LR_CPU_F64_PRODUCTS"), "1") == 0;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:f:t:o:b:p:k:qhV", longopts, NULL)) != -1) {
        for (size_t i = 0; i < N_OPTION_USE; i++)
            if (option_use[i].code == c) given[i] = true;
        switch (c) {
        case 'm':
            a->model = optarg;
            break;
        case 'f':
            a->fixture = optarg;
            break;
        case 't':
            a->tokens = optarg;
            break;
        case 'o':
            a->out = optarg;
            break;
        case 'b':
            a->opt.backend = optarg;
            a->backend_given = true;
            break;
        case 'p':
            if (parse_precision(optarg, &a->opt.precision))
                return bad("--precision: \"%s\" is not f64, f32, bf16 or fp16", optarg);
            a->precision_given = true;
            break;
        case 'k': {
            size_t used = strlen(a->kernels);
            if (!strchr(optarg, '=') || used + strlen(optarg) + 2 > sizeof a->kernels)
                return bad("--kernel: \"%s\" is not FAMILY=NAME", optarg);
            snprintf(a->kernels + used, sizeof a->kernels - used, "%s%s", used ? "," : "", optarg);
            a->opt.kernels = a->kernels;
            break;
        }
        case OPT_A:
            a->spec_a = optarg;
            break;
        case OPT_ISOLATE: {
            /* --isolate, --isolate=op, or --isolate op / --isolate layer */
            const char *level = optarg;
            if (!level && optind < argc &&
                (strcmp(argv[optind], "op") == 0 || strcmp(argv[optind], "layer") == 0))
                level = argv[optind++];
            if (level && strcmp(level, "op") != 0 && strcmp(level, "layer") != 0)
                return bad("--isolate: \"%s\" is not layer or op", level);
            a->isolate = true;
            a->isolate_ops = level && strcmp(level, "op") == 0;
            break;
        }
        case OPT_STAGES:
            a->stages = optarg;
            break;
        case OPT_NAMES:
            if (strcmp(optarg, "hf") != 0 && strcmp(optarg, "vllm") != 0 && strcmp(optarg, "llama.cpp") != 0)
                return bad("--names: \"%s\" is not hf, vllm or llama.cpp", optarg);
            a->names = optarg;
            break;
        case OPT_ROUNDING: {
            lr_rounding r;
            if (lr_rounding_find(optarg, &r))
                return bad("--rounding: \"%s\" is no rounding profile (%s)", optarg, lr_rounding_names());
            a->rounding = optarg;
            break;
        }
        case OPT_INJECT:
            if (a->nfaults == (int)(sizeof a->faults / sizeof a->faults[0]))
                return bad("--inject: at most %d faults", a->nfaults);
            if (lr_fault_parse(optarg, &a->faults[a->nfaults]) != LR_OK)
                return bad("--inject: %s", lr_last_error());
            a->nfaults++;
            break;
        case OPT_REPORT:
            a->report = optarg;
            break;
        case OPT_PLUGIN:
            if (a->nplugins == (int)(sizeof a->plugins / sizeof a->plugins[0]))
                return bad("--plugin: at most %d plugins", a->nplugins);
            a->plugins[a->nplugins++] = optarg;
            break;
        case OPT_GGUF:
            a->gguf = optarg;
            break;
        case OPT_DECODE:
            if (parse_int(optarg, "--decode", 1, 1 << 20, &a->decode)) return EXIT_BAD;
            break;
        case OPT_B:
            a->spec_b = optarg;
            break;
        case OPT_CUDA_GRAPHS:
            a->opt.cuda_graphs = true;
            break;
        case OPT_DEVICES:
            if (parse_int(optarg, "--devices", 1, 64, &a->opt.num_devices)) return EXIT_BAD;
            break;
        case OPT_TP:
            if (parse_int(optarg, "--tp", 1, 4096, &a->opt.tp_size)) return EXIT_BAD;
            break;
        case OPT_THREADS:
            if (parse_int(optarg, "--threads", 1, 1024, &a->opt.num_threads)) return EXIT_BAD;
            a->threads_given = true;
            break;
        case OPT_MEMORY:
            if (parse_size(optarg, "--memory", &a->opt.memory_budget)) return EXIT_BAD;
            break;
        case OPT_JSON:
            a->json = true;
            break;
        case OPT_FORCE:
            a->force = true;
            break;
        case 'q':
            a->quiet = true;
            break;
        case 'h':
            usage(stdout);
            exit(EXIT_AGREE);
        case 'V':
            printf("llama-diff (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
            exit(EXIT_AGREE);
        case ':':
            return bad("option %s needs a value (see --help)", argv[optind - 1]);
        default:
            return bad("unknown option %s (see --help)", argv[optind - 1]);
        }
    }
    for (; optind < argc; optind++) {
        if (a->npos == LD_MAX_POS) return bad("compare: at most %d files (see --help)", LD_MAX_POS);
        a->pos[a->npos++] = argv[optind];
    }
    if (a->npos && !is_cmd(a, "compare")) return bad("unexpected argument \"%s\" (see --help)", a->pos[0]);
    bool convert = is_cmd(a, "convert");
    if (a->gguf && !convert && command_bit(a))
        return bad(
            "--gguf: %s does not use it (an option of convert; other commands take a .gguf file as --model)",
            a->cmd ? a->cmd : "check");
    if (convert && (a->model || a->fixture || a->tokens))
        return bad("convert: takes --gguf FILE and --out DIR (not %s)", a->model     ? "--model"
                                                                        : a->fixture ? "--fixture"
                                                                                     : "--tokens");
    /* backends' own message says where each side's backend and precision go. */
    if (is_cmd(a, "backends") && (a->backend_given || a->precision_given)) return check_backend(a);
    int status = refuse_unused(a, given);
    if (status) return status;
    if (a->force && !a->report && (command_bit(a) & (U_CHECK | U_COMPARE | U_BACKENDS)))
        return bad("--force: %s uses it only with --report (to replace the report file)",
                   a->cmd ? a->cmd : "check");
    if ((status = check_backend(a))) return status;
    if ((a->out && (status = check_out_parent("--out", a->out))) ||
        (a->report && (status = check_out_parent("--report", a->report))))
        return status;
    if ((status = check_backend_settings(a))) return status;
    return kernels_prepare(a);
}

/* The default job's model and fixture: the cached SmolLM2 GGUF with its golden fixture
 * when both are there, else the bundled model and fixture. Fills *model and *fixture
 * with fresh strings and says which on stderr when it is SmolLM2. */
#define SMOLLM2_GGUF "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
#define SMOLLM2_FIXTURE "golden/smollm2-135m.safetensors"

static char *smollm2_path(void) {
    const char *cache = getenv("LLAMAREF_CACHE"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char *root = NULL, *path = NULL;
    if (cache && *cache)
        root = strdup(cache);
    else if (xdg && *xdg)
        root = join(xdg, "llamaref");
    else if (home && *home)
        root = join(home, ".cache/llamaref");
    if (root) path = join(root, SMOLLM2_GGUF);
    free(root);
    return path;
}

static int default_job(char **model, char **fixture) {
    const char *root = fixtures_root();
    char *gguf = smollm2_path(), *fx = join(root, SMOLLM2_FIXTURE);
    if (is_file(gguf) && is_file(fx)) {
        *model = gguf;
        *fixture = fx;
        fprintf(stderr, "llama-diff: default job: SmolLM2-135M-Instruct from the cache (%s) against %s\n",
                gguf, fx);
    } else {
        free(gguf);
        free(fx);
        *model = join(root, DEFAULT_MODEL);
        *fixture = join(root, DEFAULT_FIXTURE);
    }
    return *model && *fixture ? 0 : bad("out of memory");
}

int main(int argc, char **argv) {
    /* ops has options of its own (ops.c). kernels was ops --list under an older name: the
     * one listing of kernel variants is ops --list alone. */
    if (argc > 1 && strcmp(argv[1], "ops") == 0) return cmd_ops(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "kernels") == 0)
        return bad("there is no kernels command: use llama-diff ops --list (the kernel families and "
                   "variants; it takes --plugin, --op, --variant, --dtype and --json)");
    args a = {0};
    int first = 1;
    if (argc > 1 && argv[1][0] != '-') {
        a.cmd = argv[1];
        first = 2;
    }
    /* getopt sees the options after the command. */
    argv[first - 1] = argv[0];
    int status = parse_args(argc - first + 1, argv + first - 1, &a);
    if (status) return status;
    a.color = !a.json && isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
    /* NVLink SHARP multicast stays off unless the user says otherwise: the library leaves
     * NCCL's environment alone, and the lent multi-GPU machines require it off. */
    setenv("NCCL_NVLS_ENABLE", "0", 0);

    char *model = NULL, *fixture = NULL;
    if (!a.cmd) {
        /* The bundled default: check the default model against its fixture. */
        if (!a.model && !a.fixture) {
            if ((status = default_job(&model, &fixture))) return status;
            a.model = model;
            a.fixture = fixture;
        }
        const char *root = fixtures_root();
        if (!a.model) a.model = model = join(root, DEFAULT_MODEL);
        if (!a.fixture) a.fixture = fixture = join(root, DEFAULT_FIXTURE);
        a.cmd = "check";
    }
    static const struct {
        const char *name;
        int (*run)(const args *a);
    } commands[] = {
        {"check", cmd_check},     {"dump", cmd_dump},       {"info", cmd_info},
        {"convert", cmd_convert}, {"compare", cmd_compare}, {"backends", cmd_backends},
    };
    size_t i = 0;
    while (i < sizeof commands / sizeof commands[0] && !is_cmd(&a, commands[i].name))
        i++;
    if (i < sizeof commands / sizeof commands[0])
        status = commands[i].run(&a);
    else if (is_cmd(&a, "help"))
        usage(stdout), status = EXIT_AGREE;
    else
        status = bad("unknown command \"%s\" (commands: check, dump, compare, backends, info, convert, "
                     "ops; see --help)",
                     a.cmd);
    free(model);
    free(fixture);
    return status;
}
