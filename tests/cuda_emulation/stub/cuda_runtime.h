// Stand-in for <cuda_runtime.h> in the CPU model of the CUDA kernels (tests/cuda_emulation).
#pragma once
#include "../emu.h"
