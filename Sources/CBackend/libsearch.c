// Finding shared libraries at run time: explicit folders, pip's nvidia/*/lib folders, then the
// system loader. Used for OpenBLAS, libcuda, NVRTC and cuBLASLt.
#define _GNU_SOURCE
#include "cbackend.h"
#include <dlfcn.h>
#include <glob.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char exe_dir[PATH_MAX];
static pthread_once_t exe_once = PTHREAD_ONCE_INIT;

static void find_exe_dir(void) {
    ssize_t n = readlink("/proc/self/exe", exe_dir, sizeof exe_dir - 1);
    if (n <= 0) { exe_dir[0] = 0; return; }
    exe_dir[n] = 0;
    char *slash = strrchr(exe_dir, '/');
    if (slash) *slash = 0;
}

const char *rt_executable_dir(void) {
    pthread_once(&exe_once, find_exe_dir);
    return exe_dir;
}

static void append(char *dst, size_t size, const char *text) {
    size_t len = strlen(dst);
    if (len + 1 < size) snprintf(dst + len, size - len, "%s", text);
}

static void *try_open(const char *file, char *path, size_t path_size) {
    void *handle = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (handle && path) snprintf(path, path_size, "%s", file);
    return handle;
}

// Site-packages style folders where pip puts nvidia-* wheels.
static const char *const pip_globs[] = {
    "/usr/local/lib/python3*/dist-packages", "/usr/local/lib/python3*/site-packages",
    "/usr/lib/python3/dist-packages", "/opt/conda/lib/python3*/site-packages", NULL,
};

static void *try_pip_base(const char *base, const char *name, char *path, size_t path_size) {
    char pattern[PATH_MAX];
    snprintf(pattern, sizeof pattern, "%s/nvidia/*/lib/%s", base, name);
    glob_t g;
    void *handle = NULL;
    if (glob(pattern, 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc && !handle; i++) handle = try_open(g.gl_pathv[i], path, path_size);
        globfree(&g);
    }
    return handle;
}

static void *try_pip(const char *name, char *path, size_t path_size) {
    void *handle = NULL;
    // $PYTHONPATH entries (make test installs the NVRTC wheel with pip --target into one).
    const char *pp = getenv("PYTHONPATH");
    if (pp && *pp) {
        char *copy = strdup(pp), *save = NULL;
        for (char *dir = strtok_r(copy, ":", &save); dir && !handle; dir = strtok_r(NULL, ":", &save))
            handle = try_pip_base(dir, name, path, path_size);
        free(copy);
    }
    char pattern[PATH_MAX];
    const char *prefixes[3] = { getenv("VIRTUAL_ENV"), getenv("CONDA_PREFIX"), NULL };
    for (int p = 0; p < 2 && !handle; p++) {
        if (!prefixes[p] || !*prefixes[p]) continue;
        snprintf(pattern, sizeof pattern, "%s/lib/python3*/site-packages", prefixes[p]);
        glob_t g;
        if (glob(pattern, 0, NULL, &g) == 0) {
            for (size_t i = 0; i < g.gl_pathc && !handle; i++) handle = try_pip_base(g.gl_pathv[i], name, path, path_size);
            globfree(&g);
        }
    }
    const char *home = getenv("HOME");
    for (int i = -1; pip_globs[i + 1] && !handle; i++) {
        if (i < 0) {
            if (!home) continue;
            snprintf(pattern, sizeof pattern, "%s/.local/lib/python3*/site-packages", home);
        } else {
            snprintf(pattern, sizeof pattern, "%s", pip_globs[i]);
        }
        glob_t g;
        if (glob(pattern, 0, NULL, &g) == 0) {
            for (size_t k = 0; k < g.gl_pathc && !handle; k++) handle = try_pip_base(g.gl_pathv[k], name, path, path_size);
            globfree(&g);
        }
    }
    return handle;
}

void *rt_dlopen_search(const char *const *names, const char *const *dirs, int pip_nvidia,
                       char *path, size_t path_size, char *error, size_t error_size) {
    char file[PATH_MAX];
    for (int d = 0; dirs && dirs[d]; d++) {
        if (!dirs[d][0]) continue;
        for (int n = 0; names[n]; n++) {
            snprintf(file, sizeof file, "%s/%s", dirs[d], names[n]);
            if (access(file, R_OK) != 0) continue;
            void *handle = try_open(file, path, path_size);
            if (handle) return handle;
        }
    }
    for (int n = 0; pip_nvidia && names[n]; n++) {
        void *handle = try_pip(names[n], path, path_size);
        if (handle) return handle;
    }
    for (int n = 0; names[n]; n++) {
        void *handle = try_open(names[n], path, path_size);
        if (handle) {
            // Report the real file the system loader chose.
            struct link_map *map = NULL;
            if (path && dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map && map->l_name && map->l_name[0])
                snprintf(path, path_size, "%s", map->l_name);
            return handle;
        }
    }
    if (error && error_size) {
        error[0] = 0;
        append(error, error_size, names[0]);
        append(error, error_size, " not found");
        int listed = 0;
        for (int d = 0; dirs && dirs[d]; d++) {
            if (!dirs[d][0]) continue;
            append(error, error_size, listed++ ? ", " : " (searched ");
            append(error, error_size, dirs[d]);
        }
        if (pip_nvidia) append(error, error_size, listed++ ? ", pip nvidia/*/lib" : " (searched pip nvidia/*/lib");
        append(error, error_size, listed ? " and the system library path)" : " on the system library path");
    }
    return NULL;
}
