// Fused CPU kernels for the F(2x2,3x3) transforms of winosim.nn.layers (compiled on first use by
// winosim/nn/fused.py). Each one reads its input once and writes its output once, where the eager layer runs a
// chain of whole-tensor additions with temporaries between them. Every transform computes in float32, in the
// eager layer's order of additions, and rounds once, when it stores its result in the tensor's dtype: the
// layer's rule for reduced precision (winosim.nn.layers), so the results are the eager ones bit for bit
// (tests/nn/test_fused.py). Rounding a bfloat16 sum after every addition, as a chain of bf16 tensor additions
// does, cost more than the memory traffic on an Intel CPU with AMX (docs/training.md, Performance).
//
// Layouts are the eager layer's storage: maps channels-last (N, H, W, C); Winograd-domain tensors tiles-first
// (16, N, TH, TW, C) with position xi*4+nu; every loop runs over whole channel vectors, which the compiler
// vectorises. Work is split over (image, tile row) with OpenMP, on as many threads as torch.set_num_threads gives
// (the kernels link their own OpenMP runtime, whose default would be every core).
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

// Every channel loop is element-wise (no iteration reads what another writes), which the compiler cannot prove
// through the pointers: it would wrap each short loop (4 vectors at 64 channels) in run-time overlap checks and
// a scalar fallback. Saying so made the training step 2-12% faster on an Intel CPU with AMX (docs/training.md).
#if defined(__clang__)
#define ELEMENTWISE _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define ELEMENTWISE _Pragma("GCC ivdep")
#else
#define ELEMENTWISE
#endif

namespace {

// the dtype's storage: float as itself; bfloat16 as its 16 bits, loaded exactly into float and rounded when
// stored (round to nearest even, NaN to the quiet NaN torch writes), as torch's conversion does
template <typename T>
struct Io;

template <>
struct Io<float> {
  static inline float load(const float* p, int64_t i) { return p[i]; }
  static inline void store(float* p, int64_t i, float v) { p[i] = v; }
};

inline float bf16_to_float(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline uint16_t float_to_bf16(float f) {  // branch-free, so that the channel loops vectorise
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  const bool nan = (u & 0x7FFFFFFFu) > 0x7F800000u;
  return static_cast<uint16_t>(nan ? 0x7FC0u : rounded);
}

template <>
struct Io<uint16_t> {
  static inline float load(const uint16_t* p, int64_t i) { return bf16_to_float(p[i]); }
  static inline void store(uint16_t* p, int64_t i, float v) { p[i] = float_to_bf16(v); }
};

// ReLU(B^T d B) (or B^T d B) of every 4x4 tile of a 'same'-padded map: the row pass, then the column pass,
// then the ReLU, as input_transform_forward and relu compute them in float32. INPUT_RELU: of d = ReLU(x), the
// spatial ReLU applied as x is read (native pruned Winograd's B^T ReLU(x) B, for the blocked layer).
template <typename T, bool RELU, bool INPUT_RELU = false>
void input_transform(const T* x, T* out, int64_t N, int64_t H, int64_t W, int64_t C, int threads) {
  const int64_t TH = (H + 1) / 2, TW = (W + 1) / 2, plane = N * TH * TW * C;
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t u = 0; u < TH; ++u) {
      std::vector<float> d(16 * C), t(16 * C);
      for (int64_t v = 0; v < TW; ++v) {
        for (int i = 0; i < 4; ++i) {
          for (int j = 0; j < 4; ++j) {
            const int64_t r = 2 * u - 1 + i, s = 2 * v - 1 + j;
            float* __restrict dst = d.data() + (i * 4 + j) * C;
            if (r < 0 || r >= H || s < 0 || s >= W) {
              ELEMENTWISE
              for (int64_t c = 0; c < C; ++c) dst[c] = 0.f;
              continue;
            }
            const T* __restrict src = x + ((n * H + r) * W + s) * C;
            ELEMENTWISE
            for (int64_t c = 0; c < C; ++c) {
              const float value = Io<T>::load(src, c);
              dst[c] = INPUT_RELU && value < 0.f ? 0.f : value;  // as torch.relu: NaN and -0 stay
            }
          }
        }
        for (int j = 0; j < 4; ++j) {  // B^T from the left: row i of the tile's column j
          const float* __restrict d0 = d.data() + (0 + j) * C;
          const float* __restrict d1 = d.data() + (4 + j) * C;
          const float* __restrict d2 = d.data() + (8 + j) * C;
          const float* __restrict d3 = d.data() + (12 + j) * C;
          float* __restrict t0 = t.data() + (0 + j) * C;
          float* __restrict t1 = t.data() + (4 + j) * C;
          float* __restrict t2 = t.data() + (8 + j) * C;
          float* __restrict t3 = t.data() + (12 + j) * C;
          ELEMENTWISE
          for (int64_t c = 0; c < C; ++c) {
            t0[c] = d0[c] - d2[c];
            t1[c] = d1[c] + d2[c];
            t2[c] = d2[c] - d1[c];
            t3[c] = d1[c] - d3[c];
          }
        }
        const int64_t base = ((n * TH + u) * TW + v) * C;
        for (int i = 0; i < 4; ++i) {  // B from the right, then the ReLU
          const float* __restrict a0 = t.data() + (i * 4 + 0) * C;
          const float* __restrict a1 = t.data() + (i * 4 + 1) * C;
          const float* __restrict a2 = t.data() + (i * 4 + 2) * C;
          const float* __restrict a3 = t.data() + (i * 4 + 3) * C;
          T* __restrict o0 = out + (i * 4 + 0) * plane + base;
          T* __restrict o1 = out + (i * 4 + 1) * plane + base;
          T* __restrict o2 = out + (i * 4 + 2) * plane + base;
          T* __restrict o3 = out + (i * 4 + 3) * plane + base;
          ELEMENTWISE
          for (int64_t c = 0; c < C; ++c) {
            float y0 = a0[c] - a2[c], y1 = a1[c] + a2[c];
            float y2 = a2[c] - a1[c], y3 = a1[c] - a3[c];
            if (RELU) {  // as torch.relu: only values below zero become 0 (NaN and -0 stay)
              y0 = y0 < 0.f ? 0.f : y0;
              y1 = y1 < 0.f ? 0.f : y1;
              y2 = y2 < 0.f ? 0.f : y2;
              y3 = y3 < 0.f ? 0.f : y3;
            }
            Io<T>::store(o0, c, y0);
            Io<T>::store(o1, c, y1);
            Io<T>::store(o2, c, y2);
            Io<T>::store(o3, c, y3);
          }
        }
      }
    }
  }
}

// Y = A^T M A per tile into the (N, 2TH, 2TW, K) map, in output_transform_forward's order:
// s_j = ((m_j + m_4+j) + m_8+j, (m_4+j - m_8+j) - m_12+j), then y_a0 = (s_0 + s_1) + s_2, y_a1 = (s_1 - s_2) - s_3.
template <typename T>
void output_transform(const T* m, T* y, int64_t N, int64_t TH, int64_t TW, int64_t K, int threads) {
  const int64_t plane = N * TH * TW * K;
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t u = 0; u < TH; ++u) {
      std::vector<float> s(8 * K);  // s[(a * 4 + j) * K + k]
      for (int64_t v = 0; v < TW; ++v) {
        const int64_t base = ((n * TH + u) * TW + v) * K;
        for (int j = 0; j < 4; ++j) {
          const T* __restrict m0 = m + (0 + j) * plane + base;
          const T* __restrict m1 = m + (4 + j) * plane + base;
          const T* __restrict m2 = m + (8 + j) * plane + base;
          const T* __restrict m3 = m + (12 + j) * plane + base;
          float* __restrict s0 = s.data() + (0 + j) * K;
          float* __restrict s1 = s.data() + (4 + j) * K;
          ELEMENTWISE
          for (int64_t k = 0; k < K; ++k) {
            const float v0 = Io<T>::load(m0, k), v1 = Io<T>::load(m1, k);
            const float v2 = Io<T>::load(m2, k), v3 = Io<T>::load(m3, k);
            s0[k] = v0 + v1 + v2;
            s1[k] = v1 - v2 - v3;
          }
        }
        for (int a = 0; a < 2; ++a) {
          const float* __restrict q0 = s.data() + (a * 4 + 0) * K;
          const float* __restrict q1 = s.data() + (a * 4 + 1) * K;
          const float* __restrict q2 = s.data() + (a * 4 + 2) * K;
          const float* __restrict q3 = s.data() + (a * 4 + 3) * K;
          T* __restrict y0 = y + (((n * TH + u) * 2 + a) * TW * 2 + 2 * v) * K;  // storage (N, TH, 2, TW, 2, K)
          T* __restrict y1 = y0 + K;
          ELEMENTWISE
          for (int64_t k = 0; k < K; ++k) {
            Io<T>::store(y0, k, q0[k] + q1[k] + q2[k]);
            Io<T>::store(y1, k, q1[k] - q2[k] - q3[k]);
          }
        }
      }
    }
  }
}

// dM of Y = A^T M A from dY (N, H, W, K), zero beyond the map, in output_transform_backward's order:
// rows_a = (g_a0, g_a0 + g_a1, g_a0 - g_a1, -g_a1); dm_j = r0_j, dm_4+j = r0_j + r1_j, dm_8+j = r0_j - r1_j,
// dm_12+j = -r1_j.
template <typename T>
void output_transform_backward(const T* dy, T* dm, int64_t N, int64_t H, int64_t W, int64_t K, int threads) {
  const int64_t TH = (H + 1) / 2, TW = (W + 1) / 2, plane = N * TH * TW * K;
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t u = 0; u < TH; ++u) {
      std::vector<float> g(4 * K), r(8 * K);
      for (int64_t v = 0; v < TW; ++v) {
        for (int a = 0; a < 2; ++a) {
          for (int b = 0; b < 2; ++b) {
            const int64_t row = 2 * u + a, col = 2 * v + b;
            float* __restrict dst = g.data() + (a * 2 + b) * K;
            if (row >= H || col >= W) {
              ELEMENTWISE
              for (int64_t k = 0; k < K; ++k) dst[k] = 0.f;
              continue;
            }
            const T* __restrict src = dy + ((n * H + row) * W + col) * K;
            ELEMENTWISE
            for (int64_t k = 0; k < K; ++k) dst[k] = Io<T>::load(src, k);
          }
          const float* __restrict g0 = g.data() + (a * 2 + 0) * K;
          const float* __restrict g1 = g.data() + (a * 2 + 1) * K;
          float* __restrict r0 = r.data() + (a * 4 + 0) * K;
          float* __restrict r1 = r.data() + (a * 4 + 1) * K;
          float* __restrict r2 = r.data() + (a * 4 + 2) * K;
          float* __restrict r3 = r.data() + (a * 4 + 3) * K;
          ELEMENTWISE
          for (int64_t k = 0; k < K; ++k) {
            r0[k] = g0[k];
            r1[k] = g0[k] + g1[k];
            r2[k] = g0[k] - g1[k];
            r3[k] = -g1[k];
          }
        }
        const int64_t base = ((n * TH + u) * TW + v) * K;
        for (int j = 0; j < 4; ++j) {
          const float* __restrict p0 = r.data() + (0 * 4 + j) * K;
          const float* __restrict p1 = r.data() + (1 * 4 + j) * K;
          T* __restrict o0 = dm + (0 + j) * plane + base;
          T* __restrict o1 = dm + (4 + j) * plane + base;
          T* __restrict o2 = dm + (8 + j) * plane + base;
          T* __restrict o3 = dm + (12 + j) * plane + base;
          ELEMENTWISE
          for (int64_t k = 0; k < K; ++k) {
            Io<T>::store(o0, k, p0[k]);
            Io<T>::store(o1, k, p0[k] + p1[k]);
            Io<T>::store(o2, k, p0[k] - p1[k]);
            Io<T>::store(o3, k, -p1[k]);
          }
        }
      }
    }
  }
}

// dx of V = B^T d B (MASK: of ReLU(B^T d B), the gradient first zeroed where V <= 0, as threshold_backward
// does), in input_transform_backward's order: per tile row, the column pass's adjoint with each overlap of
// neighbouring tiles one addition; then the row pass's adjoint the same way across tile rows; then the
// crop of the padded map. Each image is one piece of work; its tile rows go in order, the column adjoint of the
// row before kept for the overlap. INPUT_RELU: the gradient of x through a spatial ReLU before the transform,
// zero where x <= 0 (as ReLU's threshold_backward), `input` being x.
template <typename T, bool INPUT_RELU>
inline void store_dx(T* out, const T* input, int64_t k, float value) {
  if (INPUT_RELU) value = Io<T>::load(input, k) > 0.f ? value : 0.f;
  Io<T>::store(out, k, value);
}

template <typename T, bool MASK, bool INPUT_RELU = false>
void input_transform_backward(const T* dv, const T* v, T* dx, int64_t N, int64_t H, int64_t W, int64_t C,
                              int threads, const T* input = nullptr) {
  const int64_t TH = (H + 1) / 2, TW = (W + 1) / 2, plane = N * TH * TW * C;
  const int64_t cols = TW + 1;  // de-interleaved columns per parity
  const int64_t slot_size = 4 * 2 * cols * C;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t n = 0; n < N; ++n) {
    // e[slot][i][p][c][k]: the column-pass adjoint (gradient of row-pass output i, column parity p, column c) of
    // the tile row before (slot (r + 1) % 2) and this one (slot r % 2)
    std::vector<float> e(2 * slot_size), g(16 * C), carry(4 * 2 * C);
    for (int64_t r = 0; r <= TH; ++r) {
      float* cur = e.data() + (r % 2) * slot_size;
      const float* prev = e.data() + ((r + 1) % 2) * slot_size;
      auto at = [cols, C](float* base, int i, int p, int64_t c) { return base + ((i * 2 + p) * cols + c) * C; };
      auto at_c = [cols, C](const float* base, int i, int p, int64_t c) { return base + ((i * 2 + p) * cols + c) * C; };
      if (r < TH) {
        for (int64_t t = 0; t < TW; ++t) {
          const int64_t base = ((n * TH + r) * TW + t) * C;
          for (int q = 0; q < 16; ++q) {
            const T* __restrict gq = dv + q * plane + base;
            float* __restrict dst = g.data() + q * C;
            if (MASK) {
              const T* __restrict vq = v + q * plane + base;
              ELEMENTWISE
              for (int64_t k = 0; k < C; ++k) dst[k] = Io<T>::load(vq, k) <= 0.f ? 0.f : Io<T>::load(gq, k);
            } else {
              ELEMENTWISE
              for (int64_t k = 0; k < C; ++k) dst[k] = Io<T>::load(gq, k);
            }
          }
          for (int i = 0; i < 4; ++i) {
            const float* __restrict d0 = g.data() + (4 * i + 0) * C;
            const float* __restrict d1 = g.data() + (4 * i + 1) * C;
            const float* __restrict d2 = g.data() + (4 * i + 2) * C;
            const float* __restrict d3 = g.data() + (4 * i + 3) * C;
            float* __restrict even = at(cur, i, 0, t);  // x0 at offset 0, x2 at offset 1
            float* __restrict odd = at(cur, i, 1, t);   // x1 at offset 0, x3 (gradient -d3) at offset 1
            float* __restrict b_prev = carry.data() + (i * 2 + 0) * C;
            float* __restrict d3_prev = carry.data() + (i * 2 + 1) * C;
            if (t == 0) {
              ELEMENTWISE
              for (int64_t k = 0; k < C; ++k) {
                even[k] = d0[k];
                odd[k] = d1[k] - d2[k] + d3[k];
                b_prev[k] = d1[k] + d2[k] - d0[k];
                d3_prev[k] = d3[k];
              }
            } else {
              ELEMENTWISE
              for (int64_t k = 0; k < C; ++k) {
                const float a = d1[k] - d2[k] + d3[k];
                even[k] = d0[k] + b_prev[k];
                odd[k] = a - d3_prev[k];
                b_prev[k] = d1[k] + d2[k] - d0[k];
                d3_prev[k] = d3[k];
              }
            }
          }
        }
        for (int i = 0; i < 4; ++i) {
          float* __restrict even = at(cur, i, 0, TW);
          float* __restrict odd = at(cur, i, 1, TW);
          const float* __restrict b_prev = carry.data() + (i * 2 + 0) * C;
          const float* __restrict d3_prev = carry.data() + (i * 2 + 1) * C;
          ELEMENTWISE
          for (int64_t k = 0; k < C; ++k) {
            even[k] = b_prev[k];
            odd[k] = -d3_prev[k];
          }
        }
      }
      // the row-pass adjoint for padded rows 2r (parity 0: x0 = e0 at offset 0, x2 = e1 + e2 - e0 at offset 1)
      // and 2r + 1 (parity 1: x1 = e1 - e2 + e3 at offset 0, x3 = -e3 at offset 1), every padded column
      for (int a = 0; a < 2; ++a) {
        const int64_t y = 2 * r + a - 1;  // the output row (padding 1 removed)
        if (y < 0 || y >= H) continue;
        for (int64_t c = 0; c < cols; ++c) {
          for (int p = 0; p < 2; ++p) {
            const int64_t x = 2 * c + p - 1;
            if (x < 0 || x >= W) continue;
            T* __restrict out = dx + ((n * H + y) * W + x) * C;
            const T* __restrict in = INPUT_RELU ? input + ((n * H + y) * W + x) * C : nullptr;
            const float* __restrict e0 = at_c(cur, 0, p, c);
            const float* __restrict e1 = at_c(cur, 1, p, c);
            const float* __restrict e2 = at_c(cur, 2, p, c);
            const float* __restrict e3 = at_c(cur, 3, p, c);
            const float* __restrict q0 = at_c(prev, 0, p, c);
            const float* __restrict q1 = at_c(prev, 1, p, c);
            const float* __restrict q2 = at_c(prev, 2, p, c);
            const float* __restrict q3 = at_c(prev, 3, p, c);
            if (a == 0 && r == 0) {
              ELEMENTWISE
              for (int64_t k = 0; k < C; ++k) store_dx<T, INPUT_RELU>(out, in, k, e0[k]);
            } else if (a == 0 && r == TH) {
              ELEMENTWISE
              for (int64_t k = 0; k < C; ++k) store_dx<T, INPUT_RELU>(out, in, k, q1[k] + q2[k] - q0[k]);
            } else if (a == 0) {
              ELEMENTWISE
              for (int64_t k = 0; k < C; ++k) {
                const float f2 = q1[k] + q2[k] - q0[k];
                store_dx<T, INPUT_RELU>(out, in, k, e0[k] + f2);
              }
            } else if (r == 0) {
              ELEMENTWISE
              for (int64_t k = 0; k < C; ++k) store_dx<T, INPUT_RELU>(out, in, k, e1[k] - e2[k] + e3[k]);
            } else if (r == TH) {
              ELEMENTWISE
              for (int64_t k = 0; k < C; ++k) store_dx<T, INPUT_RELU>(out, in, k, -q3[k]);
            } else {
              ELEMENTWISE
              for (int64_t k = 0; k < C; ++k) {
                const float f1 = e1[k] - e2[k] + e3[k];
                store_dx<T, INPUT_RELU>(out, in, k, f1 - q3[k]);
              }
            }
          }
        }
      }
    }
  }
}

void check_map(const torch::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu() && t.dim() == 4 && t.is_contiguous(at::MemoryFormat::ChannelsLast),
              what, ": a channels-last CPU map");
  TORCH_CHECK(t.scalar_type() == torch::kFloat32 || t.scalar_type() == torch::kBFloat16, what, ": float32 or bfloat16");
}


// ---- The whole layer, a block of images at a time (winograd_forward_fused, winograd_backward_fused) ----
//
// Each of torch's threads takes whole blocks of images and runs every stage of the layer on one block before the
// next: the input transform into a block-sized V, the 16 products (torch's bmm, single-threaded inside the
// parallel region), the output transform; backward the same way with V recomputed from x. A block's V and M
// (at most 4 MiB, `block_images`) stay in cache instead of going through memory whole (at 64 channels, 32x32,
// batch 128, bf16: 67 MB each), and V is never stored for the backward pass. The computation is the unblocked
// layer's, but not always to the last bit: a block's products are a GEMM of fewer rows, for which torch may pick
// another kernel, and dW sums one product per block (bf16: each rounded to bf16, summed in float32), where the
// unblocked layer runs one bmm over all tiles (tests/nn/test_fused.py compares both with float64).

// images per block: as many as keep a block's V (16 x tiles x C elements) within 4 MiB (of 1, 2, 4, 8 and 16 MiB
// the fastest on an Intel CPU with AMX at every layer shape of the two networks, docs/training.md, Performance),
// at least one, and no more than leave every thread a block
int64_t block_images(int64_t N, int64_t tiles_per_image, int64_t channels, int64_t element_bytes) {
  const int64_t bytes = 16 * tiles_per_image * channels * element_bytes;
  const int64_t fit = std::max<int64_t>(1, (int64_t{4} << 20) / std::max<int64_t>(bytes, 1));
  const int64_t threads = std::max(1, at::get_num_threads());
  return std::max<int64_t>(1, std::min(fit, (N + threads - 1) / threads));
}

// the first `rows` rows of a (16, capacity, cols) contiguous buffer, as a contiguous (16, rows, cols) tensor
torch::Tensor leading(const torch::Tensor& buffer, int64_t rows) {
  const int64_t cols = buffer.size(2);
  return buffer.view({-1}).narrow(0, 0, 16 * rows * cols).view({16, rows, cols});
}

// acc (float32) += product (bfloat16), element by element (torch's mixed-dtype add_ ran single-threaded at a
// tenth of this speed inside the parallel region)
void accumulate(torch::Tensor& acc, const torch::Tensor& product) {
  float* __restrict a = acc.data_ptr<float>();
  const uint16_t* __restrict p = reinterpret_cast<const uint16_t*>(product.data_ptr<at::BFloat16>());
  const int64_t n = acc.numel();
ELEMENTWISE
  for (int64_t i = 0; i < n; ++i) a[i] += bf16_to_float(p[i]);
}

template <typename T, bool RELU, bool INPUT_RELU>
void layer_forward(const torch::Tensor& x, const torch::Tensor& w, torch::Tensor& y) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), K = w.size(2);
  const int64_t TH = (H + 1) / 2, TW = (W + 1) / 2, tiles = TH * TW;
  const int64_t B = block_images(N, tiles, C, sizeof(T)), blocks = (N + B - 1) / B;
  const T* xp = reinterpret_cast<const T*>(x.data_ptr());
  T* yp = reinterpret_cast<T*>(y.data_ptr());
  at::parallel_for(0, blocks, 1, [&](int64_t first, int64_t last) {
    auto v = torch::empty({16, B * tiles, C}, x.options().memory_format(at::MemoryFormat::Contiguous));
    auto m = torch::empty({16, B * tiles, K}, x.options().memory_format(at::MemoryFormat::Contiguous));
    for (int64_t b = first; b < last; ++b) {
      const int64_t n0 = b * B, nb = std::min(B, N - n0);
      auto vb = leading(v, nb * tiles), mb = leading(m, nb * tiles);
      input_transform<T, RELU, INPUT_RELU>(xp + n0 * H * W * C, reinterpret_cast<T*>(vb.data_ptr()), nb, H, W, C, 1);
      at::bmm_out(mb, vb, w);
      output_transform<T>(reinterpret_cast<const T*>(mb.data_ptr()), yp + n0 * 4 * tiles * K, nb, TH, TW, K, 1);
    }
  });
}

// dx and dW; the weight gradient of each of `parts` contiguous runs of blocks accumulates in float32 in its own
// slice of `dw_parts` (for bfloat16 each block's product rounded to bfloat16 first), the parts summed after in
// order: the same bits for the same thread count.
template <typename T, bool RELU, bool INPUT_RELU>
void layer_backward(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& dy, torch::Tensor& dx,
                    torch::Tensor& dw_parts) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), K = w.size(2);
  const int64_t TH = (H + 1) / 2, TW = (W + 1) / 2, tiles = TH * TW;
  const int64_t B = block_images(N, tiles, C, sizeof(T)), blocks = (N + B - 1) / B;
  const int64_t parts = dw_parts.size(0);
  const T* xp = reinterpret_cast<const T*>(x.data_ptr());
  const T* dyp = reinterpret_cast<const T*>(dy.data_ptr());
  T* dxp = reinterpret_cast<T*>(dx.data_ptr());
  const auto wt = w.transpose(1, 2);
  at::parallel_for(0, parts, 1, [&](int64_t first, int64_t last) {
    const auto options = x.options().memory_format(at::MemoryFormat::Contiguous);
    auto v = torch::empty({16, B * tiles, C}, options), dv = torch::empty({16, B * tiles, C}, options);
    auto dm = torch::empty({16, B * tiles, K}, options);
    auto product = torch::empty({16, C, K}, options);
    for (int64_t part = first; part < last; ++part) {
      auto acc = dw_parts.select(0, part);
      for (int64_t b = part * blocks / parts; b < (part + 1) * blocks / parts; ++b) {
        const int64_t n0 = b * B, nb = std::min(B, N - n0);
        auto vb = leading(v, nb * tiles), dvb = leading(dv, nb * tiles), dmb = leading(dm, nb * tiles);
        input_transform<T, RELU, INPUT_RELU>(xp + n0 * H * W * C, reinterpret_cast<T*>(vb.data_ptr()), nb, H, W, C,
                                             1);
        output_transform_backward<T>(dyp + n0 * H * W * K, reinterpret_cast<T*>(dmb.data_ptr()), nb, H, W, K, 1);
        at::bmm_out(dvb, dmb, wt);
        if constexpr (std::is_same_v<T, float>) {
          at::baddbmm_out(acc, acc, vb.transpose(1, 2), dmb);
        } else {
          at::bmm_out(product, vb.transpose(1, 2), dmb);
          accumulate(acc, product);
        }
        input_transform_backward<T, RELU, INPUT_RELU>(reinterpret_cast<const T*>(dvb.data_ptr()),
                                                      reinterpret_cast<const T*>(vb.data_ptr()), dxp + n0 * H * W * C,
                                                      nb, H, W, C, 1, xp + n0 * H * W * C);
      }
    }
  });
}

void check_layer(const torch::Tensor& x, const torch::Tensor& w, const char* what) {
  check_map(x, what);
  TORCH_CHECK(w.device().is_cpu() && w.dim() == 3 && w.size(0) == 16 && w.size(1) == x.size(1) && w.is_contiguous() &&
                  w.scalar_type() == x.scalar_type(),
              what, ": a contiguous (16, C, K) weight of the map's dtype");
}

}  // namespace

// x: (N, C, H, W) channels-last -> the storage (16, N, TH, TW, C) of V
torch::Tensor input_transform_fused(const torch::Tensor& x, bool relu) {
  const int threads = at::get_num_threads();  // torch's, not this OpenMP runtime's own default
  check_map(x, "input_transform_fused");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  auto out = torch::empty({16, N, (H + 1) / 2, (W + 1) / 2, C}, x.options().memory_format(at::MemoryFormat::Contiguous));
  const bool bf16 = x.scalar_type() == torch::kBFloat16;
  const void* in = x.data_ptr();
  void* o = out.data_ptr();
  if (!bf16 && relu) input_transform<float, true>(static_cast<const float*>(in), static_cast<float*>(o), N, H, W, C, threads);
  if (!bf16 && !relu) input_transform<float, false>(static_cast<const float*>(in), static_cast<float*>(o), N, H, W, C, threads);
  if (bf16 && relu) {
    input_transform<uint16_t, true>(static_cast<const uint16_t*>(in), static_cast<uint16_t*>(o), N, H, W, C, threads);
  }
  if (bf16 && !relu) {
    input_transform<uint16_t, false>(static_cast<const uint16_t*>(in), static_cast<uint16_t*>(o), N, H, W, C, threads);
  }
  return out;
}

// m: the contiguous storage (16, N, TH, TW, K) of M -> the storage (N, TH, 2, TW, 2, K) of the 2TH x 2TW map
torch::Tensor output_transform_fused(const torch::Tensor& m) {
  const int threads = at::get_num_threads();  // torch's, not this OpenMP runtime's own default
  TORCH_CHECK(m.device().is_cpu() && m.dim() == 5 && m.size(0) == 16 && m.is_contiguous(),
              "output_transform_fused: a contiguous CPU (16, N, TH, TW, K) tensor");
  TORCH_CHECK(m.scalar_type() == torch::kFloat32 || m.scalar_type() == torch::kBFloat16,
              "output_transform_fused: float32 or bfloat16");
  const int64_t N = m.size(1), TH = m.size(2), TW = m.size(3), K = m.size(4);
  auto y = torch::empty({N, TH, 2, TW, 2, K}, m.options());
  if (m.scalar_type() == torch::kFloat32) {
    output_transform<float>(m.data_ptr<float>(), y.data_ptr<float>(), N, TH, TW, K, threads);
  } else {
    output_transform<uint16_t>(reinterpret_cast<const uint16_t*>(m.data_ptr<at::BFloat16>()),
                               reinterpret_cast<uint16_t*>(y.data_ptr<at::BFloat16>()), N, TH, TW, K, threads);
  }
  return y;
}

// dy: (N, K, H, W) channels-last -> the storage (16, N, TH, TW, K) of dM
torch::Tensor output_transform_backward_fused(const torch::Tensor& dy) {
  const int threads = at::get_num_threads();  // torch's, not this OpenMP runtime's own default
  check_map(dy, "output_transform_backward_fused");
  const int64_t N = dy.size(0), K = dy.size(1), H = dy.size(2), W = dy.size(3);
  auto dm = torch::empty({16, N, (H + 1) / 2, (W + 1) / 2, K}, dy.options().memory_format(at::MemoryFormat::Contiguous));
  if (dy.scalar_type() == torch::kFloat32) {
    output_transform_backward<float>(dy.data_ptr<float>(), dm.data_ptr<float>(), N, H, W, K, threads);
  } else {
    output_transform_backward<uint16_t>(reinterpret_cast<const uint16_t*>(dy.data_ptr<at::BFloat16>()),
                                        reinterpret_cast<uint16_t*>(dm.data_ptr<at::BFloat16>()), N, H, W, K, threads);
  }
  return dm;
}

// dv, v: the storages (16, N, TH, TW, C) of dV and of V (v undefined: no mask) -> dx (N, C, H, W) channels-last
torch::Tensor input_transform_backward_fused(const torch::Tensor& dv, const c10::optional<torch::Tensor>& v,
                                             int64_t H, int64_t W) {
  const int threads = at::get_num_threads();  // torch's, not this OpenMP runtime's own default
  TORCH_CHECK(dv.device().is_cpu() && dv.dim() == 5 && dv.size(0) == 16 && dv.is_contiguous(),
              "input_transform_backward_fused: a contiguous CPU (16, N, TH, TW, C) gradient");
  TORCH_CHECK(dv.scalar_type() == torch::kFloat32 || dv.scalar_type() == torch::kBFloat16,
              "input_transform_backward_fused: float32 or bfloat16");
  const int64_t N = dv.size(1), C = dv.size(4);
  TORCH_CHECK(dv.size(2) == (H + 1) / 2 && dv.size(3) == (W + 1) / 2, "input_transform_backward_fused: tiles");
  const bool mask = v.has_value();
  if (mask) {
    TORCH_CHECK(v->sizes() == dv.sizes() && v->is_contiguous() && v->scalar_type() == dv.scalar_type(),
                "input_transform_backward_fused: V like dV");
  }
  auto dx = torch::empty({N, C, H, W}, dv.options().memory_format(at::MemoryFormat::ChannelsLast));
  const void* g = dv.data_ptr();
  const void* vv = mask ? v->data_ptr() : nullptr;
  void* o = dx.data_ptr();
  if (dv.scalar_type() == torch::kFloat32) {
    auto* gf = static_cast<const float*>(g);
    auto* vf = static_cast<const float*>(vv);
    if (mask) input_transform_backward<float, true>(gf, vf, static_cast<float*>(o), N, H, W, C, threads);
    else input_transform_backward<float, false>(gf, vf, static_cast<float*>(o), N, H, W, C, threads);
  } else {
    auto* gb = static_cast<const uint16_t*>(g);
    auto* vb = static_cast<const uint16_t*>(vv);
    if (mask) input_transform_backward<uint16_t, true>(gb, vb, static_cast<uint16_t*>(o), N, H, W, C, threads);
    else input_transform_backward<uint16_t, false>(gb, vb, static_cast<uint16_t*>(o), N, H, W, C, threads);
  }
  return dx;
}

// x (N, C, H, W) channels-last, w (16, C, K) of x's dtype -> the storage (N, TH, 2, TW, 2, K) of
// A^T [w * V] A with V = ReLU(B^T x B) (relu: Winograd-ReLU), B^T ReLU(x) B (input_relu: native) or B^T x B
torch::Tensor winograd_forward_fused(const torch::Tensor& x, const torch::Tensor& w, bool relu, bool input_relu) {
  check_layer(x, w, "winograd_forward_fused");
  TORCH_CHECK(!(relu && input_relu), "winograd_forward_fused: a ReLU before or after the transform, not both");
  const int64_t TH = (x.size(2) + 1) / 2, TW = (x.size(3) + 1) / 2;
  auto y = torch::empty({x.size(0), TH, 2, TW, 2, w.size(2)}, x.options().memory_format(at::MemoryFormat::Contiguous));
  const bool bf16 = x.scalar_type() == torch::kBFloat16;
  if (!bf16 && relu) layer_forward<float, true, false>(x, w, y);
  if (!bf16 && input_relu) layer_forward<float, false, true>(x, w, y);
  if (!bf16 && !relu && !input_relu) layer_forward<float, false, false>(x, w, y);
  if (bf16 && relu) layer_forward<uint16_t, true, false>(x, w, y);
  if (bf16 && input_relu) layer_forward<uint16_t, false, true>(x, w, y);
  if (bf16 && !relu && !input_relu) layer_forward<uint16_t, false, false>(x, w, y);
  return y;
}

// the gradients of winograd_forward_fused: dx (N, C, H, W) channels-last in x's dtype, dW (16, C, K) float32
std::vector<torch::Tensor> winograd_backward_fused(const torch::Tensor& x, const torch::Tensor& w,
                                                   const torch::Tensor& dy, bool relu, bool input_relu) {
  check_layer(x, w, "winograd_backward_fused");
  TORCH_CHECK(!(relu && input_relu), "winograd_backward_fused: a ReLU before or after the transform, not both");
  check_map(dy, "winograd_backward_fused");
  TORCH_CHECK(dy.scalar_type() == x.scalar_type() && dy.size(0) == x.size(0) && dy.size(1) == w.size(2) &&
                  dy.size(2) == x.size(2) && dy.size(3) == x.size(3),
              "winograd_backward_fused: dY of the output's shape and x's dtype");
  auto dx = torch::empty_like(x, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const int64_t parts = std::max(1, at::get_num_threads());
  auto dw_parts = torch::zeros({parts, 16, w.size(1), w.size(2)}, x.options().dtype(torch::kFloat32));
  const bool bf16 = x.scalar_type() == torch::kBFloat16;
  if (!bf16 && relu) layer_backward<float, true, false>(x, w, dy, dx, dw_parts);
  if (!bf16 && input_relu) layer_backward<float, false, true>(x, w, dy, dx, dw_parts);
  if (!bf16 && !relu && !input_relu) layer_backward<float, false, false>(x, w, dy, dx, dw_parts);
  if (bf16 && relu) layer_backward<uint16_t, true, false>(x, w, dy, dx, dw_parts);
  if (bf16 && input_relu) layer_backward<uint16_t, false, true>(x, w, dy, dx, dw_parts);
  if (bf16 && !relu && !input_relu) layer_backward<uint16_t, false, false>(x, w, dy, dx, dw_parts);
  auto dw = dw_parts.select(0, 0).clone();
  for (int64_t part = 1; part < parts; ++part) dw.add_(dw_parts.select(0, part));
  return {dx, dw};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("input_transform", &input_transform_fused, "ReLU(B^T d B) or B^T d B, tiles-first");
  module.def("output_transform", &output_transform_fused, "A^T M A into a channels-last map");
  module.def("output_transform_backward", &output_transform_backward_fused, "dM from dY");
  module.def("input_transform_backward", &input_transform_backward_fused, "dx from dV (masked by V > 0 if given)",
             pybind11::arg("dv"), pybind11::arg("v") = pybind11::none(), pybind11::arg("height"), pybind11::arg("width"));
  module.def("winograd_forward", &winograd_forward_fused, "the whole layer, a block of images at a time per thread");
  module.def("winograd_backward", &winograd_backward_fused, "dx and dW of winograd_forward");
}
