/*
 * txlibxl's libxenctrl shim: redirection of the paths compiled into
 * libxenlight to the simulated host's root.
 *
 * libxl keeps its state in files at fixed places (/var/run/xen,
 * /var/lib/xen), runs programs from fixed places (the hotplug scripts in
 * /etc/xen/scripts, an HVM guest's device model) and loads an HVM guest's
 * firmware from fixed places.  txsim_redirect_paths() patches
 * libxenlight's GOT entries for the file calls, the exec calls and the
 * Unix socket calls (connect, bind: the device model's QMP socket) it
 * makes, so that a path under one of the prefixes in `redirects` goes to
 * the same path under the host's root instead: the host puts there what
 * libxl should find (its state directories, its own hotplug scripts, its
 * device model stand-in, stand-in firmware).  An RTLD_GLOBAL library
 * cannot interpose libc for another library, hence the GOT.  The shim's
 * own builder opens the firmware libxl names through txsim_redirect().
 *
 * Programs libxl runs that call libxenctrl themselves (libxl-save-helper:
 * xc_domain_save and xc_domain_restore) must meet the simulated host too:
 * the exec wrappers put the shim into their LD_PRELOAD (see preload_into),
 * since a process that loaded the shim with RTLD_GLOBAL (txlibxl's own,
 * in Python) has no LD_PRELOAD to hand down.  They inherit the host's
 * environment (TXLIBXL_SIM_HYPERCALL) from libxl's process.
 *
 * A process that only LD_PRELOADs the shim (xl) gets the redirection from
 * the constructor below when TXLIBXL_SIM_ROOT is set and libxenlight is
 * loaded; a process that loads libxenlight later calls
 * txsim_redirect_paths() itself.
 */
#include "xcshim.h"

static char redirect_root[PATH_MAX];
static size_t redirect_root_len;

/*
 * The compiled-in prefixes, and where each goes under the root.  A prefix
 * matches a whole path component (or the whole path): "/run/xen" matches
 * "/run/xen/domid-history", not "/run/xenfoo".  To run another program
 * of the host's instead of a compiled-in one (the device model, say),
 * add its path here and put the program at the same path under the root.
 */
static const struct { const char *from, *to; } redirects[] = {
    /* libxl's state: locks, the domid history, saved configurations. */
    { "/var/run/xen", "/var/run/xen" },
    { "/run/xen", "/var/run/xen" },
    { "/var/lib/xen", "/var/lib/xen" },
    /* Its logs (libxl_create_logfile: xl's monitor) and xl's own lock. */
    { "/var/log/xen", "/var/log/xen" },
    { "/var/lock/xl", "/var/lock/xl" },
    /* Programs libxl forks and execs: the hotplug scripts. */
    { "/etc/xen/scripts", "/etc/xen/scripts" },
    /* An HVM guest's device model (Debian's QEMU_XEN_PATH) and the
     * firmware libxl loads for it (hvmloader, SeaBIOS, OVMF). */
    { "/usr/libexec/xen-qemu-system-i386", "/usr/libexec/xen-qemu-system-i386" },
    { "/usr/lib/xen-4.17/boot", "/usr/lib/xen-4.17/boot" },
    { "/usr/share/seabios", "/usr/share/seabios" },
    { "/usr/share/ovmf", "/usr/share/ovmf" },
};

/*
 * The path to use instead of `path` (in buf), or `path` itself.  A path
 * too long to rewrite is passed through (and will fail as it would have).
 */
static const char *redirect(const char *path, char *buf)
{
    if (!redirect_root_len || !path)
        return path;
    for (size_t i = 0; i < sizeof redirects / sizeof redirects[0]; i++) {
        size_t n = strlen(redirects[i].from);
        if (strncmp(path, redirects[i].from, n) == 0 && (path[n] == '/' || path[n] == 0)) {
            int len = snprintf(buf, PATH_MAX, "%s%s%s", redirect_root, redirects[i].to, path + n);
            return (len > 0 && len < PATH_MAX) ? buf : path;
        }
    }
    return path;
}

const char *txsim_redirect(const char *path, char *buf)
{
    return redirect(path, buf);
}

static int w_open(const char *path, int flags, ...)
{
    char buf[PATH_MAX];
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    return open(redirect(path, buf), flags, mode);
}

static FILE *w_fopen(const char *path, const char *mode)
{
    char buf[PATH_MAX];
    return fopen(redirect(path, buf), mode);
}

static int w_rename(const char *from, const char *to)
{
    char b1[PATH_MAX], b2[PATH_MAX];
    return rename(redirect(from, b1), redirect(to, b2));
}

static int w_unlink(const char *path)
{
    char buf[PATH_MAX];
    return unlink(redirect(path, buf));
}

static int w_mkdir(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    return mkdir(redirect(path, buf), mode);
}

static int w_rmdir(const char *path)
{
    char buf[PATH_MAX];
    return rmdir(redirect(path, buf));
}

static DIR *w_opendir(const char *path)
{
    char buf[PATH_MAX];
    return opendir(redirect(path, buf));
}

static int w_stat(const char *path, struct stat *st)
{
    char buf[PATH_MAX];
    return stat(redirect(path, buf), st);
}

static int w_lstat(const char *path, struct stat *st)
{
    char buf[PATH_MAX];
    return lstat(redirect(path, buf), st);
}

static int w_access(const char *path, int mode)
{
    char buf[PATH_MAX];
    return access(redirect(path, buf), mode);
}

static int w_glob(const char *pattern, int flags, int (*errfunc)(const char *, int), glob_t *g)
{
    char buf[PATH_MAX];
    return glob(redirect(pattern, buf), flags, errfunc, g);
}

/*
 * The programs libxl runs that get the shim preloaded (by the base name of
 * the program, or the whole of $LIBXL_SAVE_HELPER, which libxl runs instead
 * of its own helper when it is set).  The hotplug scripts do not need it.
 */
static const char *const preload_into[] = { "libxl-save-helper" };

static bool wants_shim(const char *file)
{
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    for (size_t i = 0; i < sizeof preload_into / sizeof preload_into[0]; i++)
        if (strcmp(base, preload_into[i]) == 0)
            return true;
    const char *helper = getenv("LIBXL_SAVE_HELPER");
    return helper && strcmp(helper, file) == 0;
}

/* The shim's own absolute path, found once when it is loaded: the child
 * libxl forks (of a process with other threads) should not have to ask
 * the dynamic loader. */
static char shim_self[PATH_MAX];

__attribute__((constructor)) static void remember_self(void)
{
    Dl_info self;
    if (dladdr((void *)txsim_shim_version, &self) && self.dli_fname && self.dli_fname[0] == '/' &&
        strlen(self.dli_fname) < sizeof shim_self)
        strcpy(shim_self, self.dli_fname);
}

/* In the child libxl forked, just before exec: the shim first in
 * LD_PRELOAD, unless it is there already. */
static void preload_shim(const char *file)
{
    if (!shim_self[0] || !wants_shim(file))
        return;
    const char *old = getenv("LD_PRELOAD");
    size_t n = strlen(shim_self);
    for (const char *p = old; p && (p = strstr(p, shim_self)); p += n)
        if ((p == old || p[-1] == ':' || p[-1] == ' ') && (!p[n] || p[n] == ':' || p[n] == ' '))
            return;
    char value[2 * PATH_MAX];
    int len = snprintf(value, sizeof value, "%s%s%s", shim_self, old && *old ? ":" : "",
                       old ? old : "");
    if (len > 0 && (size_t)len < sizeof value)
        setenv("LD_PRELOAD", value, 1);
}

/* The exec family libxenlight imports: execvp (libxl__exec: hotplug
 * scripts, helpers, the device model) and execl. */
static int w_execvp(const char *file, char *const argv[])
{
    char buf[PATH_MAX];
    preload_shim(file);
    /* A bare name is looked up in PATH: not a compiled-in path. */
    return execvp(strchr(file, '/') ? redirect(file, buf) : file, argv);
}

#define EXECL_MAX_ARGS 64

static int w_execl(const char *path, const char *arg, ...)
{
    char buf[PATH_MAX];
    char *argv[EXECL_MAX_ARGS + 1];
    int n = 0;
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a; a = va_arg(ap, const char *)) {
        if (n == EXECL_MAX_ARGS) {
            va_end(ap);
            errno = E2BIG;
            return -1;
        }
        argv[n++] = (char *)a;
    }
    va_end(ap);
    argv[n] = NULL;
    preload_shim(path);
    return execv(redirect(path, buf), argv);
}

static const struct { const char *name; void *wrapper; } wrappers[] = {
    { "execvp", (void *)w_execvp },
    { "execl", (void *)w_execl },
    { "open", (void *)w_open },
    { "fopen", (void *)w_fopen },
    { "rename", (void *)w_rename },
    { "unlink", (void *)w_unlink },
    { "mkdir", (void *)w_mkdir },
    { "rmdir", (void *)w_rmdir },
    { "opendir", (void *)w_opendir },
    { "stat", (void *)w_stat },
    { "lstat", (void *)w_lstat },
    { "access", (void *)w_access },
    { "glob", (void *)w_glob },
    { "connect", (void *)txsim_w_connect },
    { "bind", (void *)txsim_w_bind },
};

static int make_dirs(const char *path)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);
    if (len >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                return -1;
            *p = c;
            if (!c)
                break;
        }
    }
    return 0;
}

struct found_lib {
    ElfW(Addr) base;
    const ElfW(Phdr) *phdr;
    ElfW(Half) phnum;
};

static int find_libxenlight(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    struct found_lib *f = data;
    if (info->dlpi_name && strstr(info->dlpi_name, "libxenlight.so")) {
        f->base = info->dlpi_addr;
        f->phdr = info->dlpi_phdr;
        f->phnum = info->dlpi_phnum;
        return 1;
    }
    return 0;
}

/* Dynamic-section pointers may or may not have been relocated by ld.so. */
static uintptr_t dyn_ptr(ElfW(Addr) base, ElfW(Addr) p)
{
    return p < base ? base + p : p;
}

static int patch_slot(void **slot, void *value, uintptr_t relro_start, uintptr_t relro_end)
{
    if (*slot == value)
        return 0;
    long pagesz = sysconf(_SC_PAGESIZE);
    uintptr_t page = (uintptr_t)slot & ~((uintptr_t)pagesz - 1);
    bool in_relro = (uintptr_t)slot >= relro_start && (uintptr_t)slot < relro_end;
    if (in_relro && mprotect((void *)page, (size_t)pagesz, PROT_READ | PROT_WRITE) < 0)
        return -1;
    *slot = value;
    if (in_relro && mprotect((void *)page, (size_t)pagesz, PROT_READ) < 0)
        return -1;
    return 0;
}

static int patch_relocs(ElfW(Addr) base, const ElfW(Rela) *rel, size_t count,
                        const ElfW(Sym) *symtab, const char *strtab,
                        uintptr_t relro_start, uintptr_t relro_end, int *patched)
{
    for (size_t i = 0; i < count; i++) {
        unsigned long type = ELF64_R_TYPE(rel[i].r_info);
        if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT)
            continue;
        const char *name = strtab + symtab[ELF64_R_SYM(rel[i].r_info)].st_name;
        for (size_t w = 0; w < sizeof wrappers / sizeof wrappers[0]; w++) {
            if (strcmp(name, wrappers[w].name) == 0) {
                void **slot = (void **)(base + rel[i].r_offset);
                if (patch_slot(slot, wrappers[w].wrapper, relro_start, relro_end) < 0)
                    return -1;
                (*patched)++;
                break;
            }
        }
    }
    return 0;
}

/* The directories the redirected prefixes need under the root. */
static const char *const root_dirs[] = {
    "/var/run/xen", "/var/lib/xen", "/var/log/xen", "/var/lock",
};

/* Patch the GOT of one loaded object; 0, or -1 with errno. */
static int patch_object(const struct found_lib *lib, int *patched)
{
    const ElfW(Dyn) *dyn = NULL;
    uintptr_t relro_start = 0, relro_end = 0;
    for (ElfW(Half) i = 0; i < lib->phnum; i++) {
        if (lib->phdr[i].p_type == PT_DYNAMIC)
            dyn = (const ElfW(Dyn) *)(lib->base + lib->phdr[i].p_vaddr);
        else if (lib->phdr[i].p_type == PT_GNU_RELRO) {
            relro_start = lib->base + lib->phdr[i].p_vaddr;
            relro_end = relro_start + lib->phdr[i].p_memsz;
        }
    }
    if (!dyn) {
        errno = ENOEXEC;
        return -1;
    }
    const ElfW(Rela) *jmprel = NULL, *rela = NULL;
    size_t jmprel_size = 0, rela_size = 0;
    const ElfW(Sym) *symtab = NULL;
    const char *strtab = NULL;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        switch (dyn->d_tag) {
        case DT_JMPREL: jmprel = (const void *)dyn_ptr(lib->base, dyn->d_un.d_ptr); break;
        case DT_PLTRELSZ: jmprel_size = dyn->d_un.d_val; break;
        case DT_RELA: rela = (const void *)dyn_ptr(lib->base, dyn->d_un.d_ptr); break;
        case DT_RELASZ: rela_size = dyn->d_un.d_val; break;
        case DT_SYMTAB: symtab = (const void *)dyn_ptr(lib->base, dyn->d_un.d_ptr); break;
        case DT_STRTAB: strtab = (const void *)dyn_ptr(lib->base, dyn->d_un.d_ptr); break;
        }
    }
    if (!symtab || !strtab) {
        errno = ENOEXEC;
        return -1;
    }
    if (jmprel && patch_relocs(lib->base, jmprel, jmprel_size / sizeof(ElfW(Rela)), symtab,
                               strtab, relro_start, relro_end, patched) < 0)
        return -1;
    if (rela && patch_relocs(lib->base, rela, rela_size / sizeof(ElfW(Rela)), symtab,
                             strtab, relro_start, relro_end, patched) < 0)
        return -1;
    return 0;
}

/* Check the root, make its directories and remember it. */
static int set_root(const char *root)
{
    if (!root || !*root) {
        errno = EINVAL;
        return -1;
    }
    size_t len = strlen(root);
    while (len > 1 && root[len - 1] == '/')
        len--;
    if (len + sizeof "/etc/xen/scripts" + 128 > PATH_MAX) {
        errno = ENAMETOOLONG;
        return -1;
    }
    char dir[PATH_MAX];
    for (size_t i = 0; i < sizeof root_dirs / sizeof root_dirs[0]; i++) {
        snprintf(dir, sizeof dir, "%.*s%s", (int)len, root, root_dirs[i]);
        if (make_dirs(dir) < 0)
            return -1;
    }
    /* Set the root before patching: once a slot is patched the wrappers
     * are live. */
    memcpy(redirect_root, root, len);
    redirect_root[len] = 0;
    redirect_root_len = len;
    return 0;
}

int txsim_redirect_paths(const char *root)
{
    struct found_lib lib = { 0, NULL, 0 };
    if (!dl_iterate_phdr(find_libxenlight, &lib)) {
        errno = ENOENT; /* libxenlight is not loaded */
        return -1;
    }
    if (set_root(root) < 0)
        return -1;
    int patched = 0;
    if (patch_object(&lib, &patched) < 0)
        return -1;
    if (!patched) {
        errno = ENOENT;
        return -1;
    }
    return 0;
}

/* The main program is the first object dl_iterate_phdr reports. */
static int find_main_program(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    struct found_lib *f = data;
    f->base = info->dlpi_addr;
    f->phdr = info->dlpi_phdr;
    f->phnum = info->dlpi_phnum;
    return 1;
}

static int libxenlight_loaded(void)
{
    struct found_lib lib = { 0, NULL, 0 };
    return dl_iterate_phdr(find_libxenlight, &lib);
}

/*
 * LD_PRELOADed into a program linked with libxenlight (xl): by the time
 * constructors run, libxenlight is mapped and relocated, so its GOT can be
 * patched now, and so can the program's own (xl opens its lock, /var/lock/xl,
 * itself).  Quiet and cheap in every other process that inherits the
 * preload (hotplug scripts, the tools they run).
 */
__attribute__((constructor)) static void redirect_when_preloaded(void)
{
    const char *root = getenv("TXLIBXL_SIM_ROOT");
    if (!root || !*root || !libxenlight_loaded())
        return;
    struct found_lib program = { 0, NULL, 0 };
    int patched = 0;
    if (txsim_redirect_paths(root) < 0 || !dl_iterate_phdr(find_main_program, &program) ||
        patch_object(&program, &patched) < 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "cannot redirect libxenlight's paths under %s: %s",
                 root, strerror(errno));
        txsim_say(msg);
    }
}
