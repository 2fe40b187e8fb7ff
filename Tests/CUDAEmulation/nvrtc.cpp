// NVRTC for the emulated device. The kernels were compiled into the emulator as C++ when it was
// built; "compiling" a source checks that it is, byte for byte, the file the emulator was built
// from (and the common header with it), then hands back a small image naming the file and the
// target architecture, which the emulated cuModuleLoadData resolves to those kernels. A source
// that differs (an edited kernel, an emulator not rebuilt) fails like a compile error. It knows
// the architectures NVRTC 13.0 does (sm_75 to sm_121); --gpu-architecture=compute_XY gives "PTX",
// which the emulated driver loads on any device of that capability or newer.
#include <algorithm>
#include <cstdio>
#include <iterator>
#include <cstdlib>
#include <string>
#include <vector>

#include "emulation.h"

namespace {

enum : int { SUCCESS = 0, OUT_OF_MEMORY = 1, PROGRAM_CREATION_FAILURE = 2, INVALID_INPUT = 3, INVALID_PROGRAM = 4,
             INVALID_OPTION = 5, COMPILATION = 6 };

/// The compute capabilities NVRTC 13.0 compiles for.
const int supported_archs[] = {75, 80, 86, 87, 88, 89, 90, 100, 103, 110, 120, 121};

struct Program {
    std::string source, name, log, image;
    bool ptx = false;
    std::vector<std::pair<std::string, std::string>> headers;   // (include name, contents)
};

const char *embedded(const std::string &name) {
    for (int i = 0; i < emu::rt_emulated_cuda_source_count(); i++)
        if (name == emu::rt_emulated_cuda_source_name(i)) return emu::rt_emulated_cuda_source_text(i);
    return nullptr;
}

}   // namespace

extern "C" {

int nvrtcVersion(int *major, int *minor) {
    *major = 13;
    *minor = 0;
    return SUCCESS;
}

int nvrtcCreateProgram(void **program, const char *source, const char *name, int num_headers, const char *const *headers,
                       const char *const *include_names) {
    if (!program || !source) return INVALID_INPUT;
    auto *p = new Program{source, name ? name : "default_program", "", "", {}};
    for (int i = 0; i < num_headers; i++) p->headers.emplace_back(include_names[i], headers[i]);
    *program = p;
    return SUCCESS;
}

int nvrtcCompileProgram(void *program, int num_options, const char *const *options) {
    if (!program) return INVALID_PROGRAM;
    Program &p = *static_cast<Program *>(program);
    int arch = 0;
    p.ptx = false;
    for (int i = 0; i < num_options; i++) {
        const std::string o = options[i];
        if (o.rfind("--gpu-architecture=sm_", 0) == 0) arch = atoi(o.c_str() + 22);
        else if (o.rfind("--gpu-architecture=compute_", 0) == 0) { arch = atoi(o.c_str() + 27); p.ptx = true; }
        else if (o.rfind("-arch=sm_", 0) == 0) arch = atoi(o.c_str() + 9);
        else if (o.rfind("--std=", 0) == 0 || o == "-lineinfo" || o.rfind("-D", 0) == 0 || o == "--use_fast_math") continue;
        else { p.log = "emulated NVRTC: unknown option " + o + "\n"; return INVALID_OPTION; }
    }
    if (std::find(std::begin(supported_archs), std::end(supported_archs), arch) == std::end(supported_archs)) {
        p.log = "nvrtc: error: invalid value for --gpu-architecture (-arch)\n";   // as NVRTC says it
        return INVALID_OPTION;
    }
    const char *text = embedded(p.name);
    if (!text) { p.log = p.name + ": no such kernel file in the emulated device (Sources/Kernels/cuda)\n"; return COMPILATION; }
    if (p.source != text) {
        p.log = p.name + ": the source differs from the one the emulated device was built from (rebuild it)\n";
        return COMPILATION;
    }
    for (auto &h : p.headers) {
        const char *header = embedded(h.first);
        if (!header || h.second != header) {
            p.log = h.first + ": the header differs from the one the emulated device was built from\n";
            return COMPILATION;
        }
    }
    p.image = std::string(p.ptx ? "RETORT-EMULATED-PTX\n" : "RETORT-EMULATED-CUBIN\n") + p.name + "\n" + std::to_string(arch) + "\n";
    return SUCCESS;
}

int nvrtcGetProgramLogSize(void *program, size_t *size) {
    *size = static_cast<Program *>(program)->log.size() + 1;
    return SUCCESS;
}

int nvrtcGetProgramLog(void *program, char *log) {
    const std::string &l = static_cast<Program *>(program)->log;
    memcpy(log, l.c_str(), l.size() + 1);
    return SUCCESS;
}

int nvrtcGetCUBINSize(void *program, size_t *size) {
    const Program &p = *static_cast<Program *>(program);
    if (p.ptx) return INVALID_INPUT;   // compiled for a virtual architecture: there is no cubin
    *size = p.image.size() + 1;
    return SUCCESS;
}

int nvrtcGetCUBIN(void *program, char *cubin) {
    const Program &p = *static_cast<Program *>(program);
    if (p.ptx) return INVALID_INPUT;
    memcpy(cubin, p.image.c_str(), p.image.size() + 1);
    return SUCCESS;
}

int nvrtcGetPTXSize(void *program, size_t *size) {
    *size = static_cast<Program *>(program)->image.size() + 1;
    return SUCCESS;
}

int nvrtcGetPTX(void *program, char *ptx) {
    const std::string &image = static_cast<Program *>(program)->image;
    memcpy(ptx, image.c_str(), image.size() + 1);
    return SUCCESS;
}

int nvrtcGetNumSupportedArchs(int *count) {
    *count = int(std::size(supported_archs));
    return SUCCESS;
}

int nvrtcGetSupportedArchs(int *archs) {
    std::copy(std::begin(supported_archs), std::end(supported_archs), archs);
    return SUCCESS;
}

int nvrtcDestroyProgram(void **program) {
    delete static_cast<Program *>(*program);
    *program = nullptr;
    return SUCCESS;
}

const char *nvrtcGetErrorString(int result) {
    switch (result) {
    case SUCCESS: return "NVRTC_SUCCESS";
    case INVALID_INPUT: return "NVRTC_ERROR_INVALID_INPUT";
    case INVALID_PROGRAM: return "NVRTC_ERROR_INVALID_PROGRAM";
    case INVALID_OPTION: return "NVRTC_ERROR_INVALID_OPTION";
    case COMPILATION: return "NVRTC_ERROR_COMPILATION";
    default: return "NVRTC_ERROR";
    }
}

}   // extern "C"
