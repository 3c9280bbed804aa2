/* The dense DCLS kernel in one pass: every tap's two 1-D profiles and their outer products, summed in registers,
 * written once in the conv's (filters, H, W) layout. The math is operators/dcls_kernel.py's (see its docstring);
 * this is its CPU forward for float32, compiled on first use by operators/native.py.
 *
 * SIMD lanes run across LANES filters at a time (GCC vector extensions, lowered to whatever the target has; on
 * x86-64 the function is cloned for AVX-512, AVX2 and the baseline, and the dynamic loader picks the clone the
 * machine runs). Per block of filters: each tap's profiles rows[H] and cols[W] (one vector per cell, rows scaled by
 * the tap's weight), then tile[h][w] = sum over taps of rows[h] cols[w], summed in a register, taps in order.
 * The block's working memory (taps (H + W) + H W vectors: 11 KiB for 9 taps in 7 x 7) stays in L1 and L2; the
 * tile is transposed into the output. It runs on the calling thread.
 *
 * NaN in any parameter gives NaN in the kernel, as the torch ops do: the clamps and the hat's max keep NaN.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LANES 16
#define SIGMA_FLOOR 0.27f /* dcls_kernel.SIGMA_FLOOR */
#define HALF_LOG2_E 0.72134752044448170368f /* exp(-u^2 / 2) = 2^(-HALF_LOG2_E u^2) */
#define LN2 0.69314718055994530942f

typedef float vf __attribute__((vector_size(4 * LANES)));
typedef int32_t vi __attribute__((vector_size(4 * LANES)));
typedef uint32_t vu __attribute__((vector_size(4 * LANES)));

#if defined(__x86_64__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif
#define INLINE static inline __attribute__((always_inline))

/* mask ? a : b per lane (mask lanes all ones or all zeros, as comparisons give) */
INLINE vf blend(vi mask, vf a, vf b) { return (vf)(((vi)a & mask) | ((vi)b & ~mask)); }
/* clamp to [low, high]; a NaN stays NaN (both comparisons are false for it) */
INLINE vf clamp(vf a, vf low, vf high) { return blend(a > high, high, blend(a < low, low, a)); }
INLINE vf absolute(vf a) { return (vf)((vi)a & 0x7fffffff); }

/* 2^x for x <= 0 (or NaN): x = n + t with n the nearest integer, |t| <= 1/2, and 2^t = e^(t ln 2) by its Taylor
 * series to degree 7 (truncation error under 6e-9 relative, below float32's rounding). Under 2^-126 it returns 0
 * where exp2 would return a subnormal (below 1.2e-38: nothing a kernel of taps in [1e-38, ...] can see). */
INLINE vf exp2_nonpositive(vf x) {
    vi n = -__builtin_convertvector(0.5f - x, vi); /* 0.5 - x > 0: truncation is the floor */
    vf t = (x - __builtin_convertvector(n, vf)) * LN2;
    vf p = 1.0f + t * (1.0f + t * (1.0f / 2 + t * (1.0f / 6 + t * (1.0f / 24 + t * (1.0f / 120 +
                   t * (1.0f / 720 + t * (1.0f / 5040)))))));
    vf scaled = (vf)((vi)p + (vi)((vu)n << 23));
    vf result = blend(x < -126.0f, (vf){0}, scaled);
    return blend(x != x, x, result);
}

/* values[(first + l) * taps + k] for the block's lanes; lanes past the last filter repeat the first one */
INLINE vf gather(const float *values, int64_t first, int active, int taps, int k) {
    float lanes[LANES];
    for (int l = 0; l < LANES; l++) lanes[l] = values[(first + (l < active ? l : 0)) * taps + k];
    vf v;
    memcpy(&v, lanes, sizeof v);
    return v;
}

/* Gaussians exp(-((centre - cell) rate)^2 / 2) over size cells into profile; returns their sum. */
INLINE vf gauss_profile(vf centre, vf rate, vf *profile, int size) {
    vf sum = {0};
    for (int cell = 0; cell < size; cell++) {
        vf u = (centre - (float)cell) * rate;
        profile[cell] = exp2_nonpositive(-HALF_LOG2_E * u * u);
        sum += profile[cell];
    }
    return sum;
}

/* hats max(0, 1 - |centre - cell|) over size cells into profile (a NaN centre gives NaN) */
INLINE void hat_profile(vf centre, vf *profile, int size) {
    for (int cell = 0; cell < size; cell++) {
        vf hat = 1.0f - absolute(centre - (float)cell);
        profile[cell] = blend(hat < 0.0f, (vf){0}, hat);
    }
}

/* weight (N, K), positions (2, N, K) row then column offsets from the window origin (size / 2), spreads (2, N, K)
 * raw Gaussian spreads or NULL for bilinear; out (N, H, W). N = filters. Returns 0, or 1 when out of memory. */
CLONES
int dcls_kernel_f32(const float *restrict weight, const float *restrict positions, const float *restrict spreads,
                    float *restrict out, int64_t filters, int taps, int height, int width) {
    const int cells = height * width;
    /* each tap's scaled row profile (taps x H vectors) and column profile (taps x W), then the block's kernel */
    vf *rows = aligned_alloc(sizeof(vf), sizeof(vf) * (taps * (height + width) + cells));
    if (!rows) return 1;
    vf *cols = rows + taps * height, *tile = cols + taps * width;
    const float origin_h = (float)(height / 2), origin_w = (float)(width / 2);
    const vf zero = {0}, last_h = zero + (float)(height - 1), last_w = zero + (float)(width - 1);
    const int64_t half = filters * taps; /* from the rows' half of positions and spreads to the columns' */
    for (int64_t first = 0; first < filters; first += LANES) {
        const int active = filters - first < LANES ? (int)(filters - first) : LANES;
        for (int k = 0; k < taps; k++) {
            vf *row_profile = rows + k * height, *col_profile = cols + k * width;
            vf scale = gather(weight, first, active, taps, k);
            /* centres as cell indices, clamped to the window */
            vf row = clamp(gather(positions, first, active, taps, k) + origin_h, zero, last_h);
            vf col = clamp(gather(positions + half, first, active, taps, k) + origin_w, zero, last_w);
            if (spreads) {
                vf row_rate = 1.0f / (absolute(gather(spreads, first, active, taps, k)) + SIGMA_FLOOR);
                vf col_rate = 1.0f / (absolute(gather(spreads + half, first, active, taps, k)) + SIGMA_FLOOR);
                vf row_sum = gauss_profile(row, row_rate, row_profile, height);
                vf col_sum = gauss_profile(col, col_rate, col_profile, width);
                scale = scale / (row_sum * col_sum); /* each 2-D Gaussian sums to 1 */
            } else {
                hat_profile(row, row_profile, height);
                hat_profile(col, col_profile, width);
            }
            for (int h = 0; h < height; h++) row_profile[h] *= scale;
        }
        for (int h = 0; h < height; h++)
            for (int w = 0; w < width; w++) {
                vf sum = rows[h] * cols[w];
                for (int k = 1; k < taps; k++) sum += rows[k * height + h] * cols[k * width + w];
                tile[h * width + w] = sum;
            }
        const float *lanes = (const float *)tile; /* (H * W, LANES) -> each filter's H * W */
        for (int l = 0; l < active; l++) {
            float *restrict filter = out + (first + l) * cells;
            for (int i = 0; i < cells; i++) filter[i] = lanes[i * LANES + l];
        }
    }
    free(rows);
    return 0;
}

