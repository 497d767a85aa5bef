// Host stand-in: see cuda_host.h (the include path puts this folder first).
#pragma once
#include "cuda_host.h"
