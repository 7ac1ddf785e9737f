"""rvq_search: every compiled backend against the reference, gradients, sampling, bad input, compile."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastmotion.ops import backends, rvq_search
from fastmotion.ops import reference
from helpers import assert_rvq_valid, fused_backends

FUSED = fused_backends()


def make_inputs(n, k, d, levels, dtype=torch.float32, device="cpu", seed=0, noncontiguous=False):
    g = torch.Generator().manual_seed(seed)
    books = torch.randn(levels, k, d, generator=g, dtype=torch.float64) / (torch.arange(levels) + 1.0)[:, None, None]
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * 1.5
    x, books = x.to(dtype).to(device), books.to(dtype).to(device)
    if noncontiguous:
        x = x.t().contiguous().t()  # column-major view
        books = torch.cat([books, books], dim=2)[:, :, ::2]  # strided last dim
        assert not x.is_contiguous() and not books.is_contiguous()
    return x, books


def small(backend, device):
    """Triton through the interpreter is slow: keep its shapes small on CPU."""
    return backend == "triton" and device == "cpu"


GRID = [  # (N, K, D, L): K not a multiple of any tile (64, 128), D not a power of two
    (0, 37, 24, 2), (1, 37, 24, 1), (7, 130, 100, 3), (1000, 37, 24, 8), (1000, 130, 100, 6), (7, 5, 3, 4),
]


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", GRID, ids=lambda s: "N{}-K{}-D{}-L{}".format(*s))
def test_matches_reference(backend, device, dtype, shape):
    n, k, d, levels = shape
    if small(backend, device) and n * k * d * levels > 1_000_000:
        n = 200
    x, books = make_inputs(n, k, d, levels, dtype, device)
    out = rvq_search(x, books, backend=backend)
    ref = rvq_search(x, books, backend="torch")
    assert_rvq_valid(x, books, out, ref)


@pytest.mark.skipif(not backends()["cpp"].available, reason="fastmotion._C not built")
@pytest.mark.parametrize("route", ["packed", "blas", "aten"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_cpp_gemm_routes_agree(route, dtype, monkeypatch):
    """Every GEMM route of the cpp backend (MKL packed, Fortran BLAS, at::addmm) gives a valid search."""
    monkeypatch.setenv("FASTMOTION_CPP_GEMM", route)
    x, books = make_inputs(300, 130, 100, 3, dtype)
    assert_rvq_valid(x, books, rvq_search(x, books, backend="cpp"), rvq_search(x, books, backend="torch"))


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("levels", range(1, 9))
def test_every_level_count(backend, device, levels):
    x, books = make_inputs(70, 45, 20, levels, device=device, seed=levels)
    assert_rvq_valid(x, books, rvq_search(x, books, backend=backend), rvq_search(x, books, backend="torch"))


@pytest.mark.parametrize("backend,device", FUSED)
def test_noncontiguous_inputs(backend, device):
    x, books = make_inputs(150, 70, 33, 3, device=device, noncontiguous=True)
    out = rvq_search(x, books, backend=backend)
    assert_rvq_valid(x, books, out, rvq_search(x.contiguous(), books.contiguous(), backend="torch"))


@pytest.mark.parametrize("backend,device", FUSED)
def test_exact_ties_pick_lowest_index(backend, device):
    books = torch.zeros(2, 6, 4, device=device)
    books[0, 1] = books[0, 3] = torch.tensor([1.0, 0, 0, 0])  # duplicates: 1 must win over 3
    books[1, 4] = books[1, 5] = torch.tensor([0, 1.0, 0, 0])
    x = torch.tensor([[1.0, 1.0, 0, 0]] * 3, device=device)
    codes, quantized, residual = rvq_search(x, books, backend=backend)
    assert codes.tolist() == [[1, 4]] * 3
    assert torch.equal(residual, torch.zeros_like(x))


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_sampling_is_seeded_and_matches_reference(backend, device, dtype):
    x, books = make_inputs(300, 40, 20, 3, dtype, device)
    runs = [rvq_search(x, books, temperature=0.5, generator=torch.Generator().manual_seed(7), backend=b)
            for b in (backend, backend, "torch")]
    assert torch.equal(runs[0][0], runs[1][0]), "same seed, same backend: same codes"
    seed = int(torch.randint(0, 2**31 - 1, (), generator=torch.Generator().manual_seed(7)))
    assert_rvq_valid(x, books, runs[0], runs[2], temperature=0.5, seed=seed, min_match=0.97)
    greedy = rvq_search(x, books, backend=backend)[0]
    assert (runs[0][0] != greedy).any(), "temperature 0.5 should change some codes"
    other = rvq_search(x, books, temperature=0.5, generator=torch.Generator().manual_seed(8), backend=backend)[0]
    assert not torch.equal(other, runs[0][0]), "another seed should give other codes"


@pytest.mark.parametrize("backend,device", FUSED)
def test_gradients_match_reference(backend, device):
    x, books = make_inputs(64, 20, 12, 3, torch.float64, device)
    w_q, w_r = torch.randn_like(x), torch.randn_like(x)
    grads = []
    for b in (backend, "torch"):
        xg, bg = x.clone().requires_grad_(), books.clone().requires_grad_()
        _, q, r = rvq_search(xg, bg, backend=b)
        ((q * w_q).sum() + (r * w_r).sum()).backward()
        grads.append((xg.grad, bg.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


@pytest.mark.parametrize("backend,device", FUSED + [pytest.param("torch", "cpu", id="torch")])
def test_gradcheck(backend, device):
    # Well-separated codes so that the finite-difference steps never flip a code.
    x, books = make_inputs(9, 6, 5, 3, torch.float64, device, seed=3)
    x.requires_grad_()
    books.requires_grad_()

    def fn(x, books):
        _, q, r = rvq_search(x, books, backend=backend)
        return q, r

    assert torch.autograd.gradcheck(fn, (x, books), eps=1e-6, atol=1e-6)


def test_empty_batch_gradient():
    x = torch.zeros(0, 8, requires_grad=True)
    books = torch.randn(2, 5, 8, requires_grad=True)
    _, q, r = rvq_search(x, books)
    (q.sum() + r.sum()).backward()
    assert torch.equal(books.grad, torch.zeros_like(books))


settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("backend,device", FUSED)
@settings(deadline=None, max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 40), k=st.integers(1, 70), d=st.integers(1, 40), levels=st.integers(1, 4),
       scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16), double=st.booleans())
def test_random_shapes_and_values(backend, device, n, k, d, levels, scale, seed, double):
    dtype = torch.float64 if double else torch.float32
    x, books = make_inputs(n, k, d, levels, dtype, device, seed=seed)
    x, books = x * scale, books * scale
    out = rvq_search(x, books, backend=backend)
    assert_rvq_valid(x, books, out, rvq_search(x, books, backend="torch"), rel=1e-4 if not double else 1e-9,
                     min_match=0.0)


BAD_INPUTS = [
    (lambda x, b: (x[0], b), ValueError, "x must be 2-D"),
    (lambda x, b: (x, b[0]), ValueError, "codebooks must be 3-D"),
    (lambda x, b: (x[:, :5], b), ValueError, "D=5"),
    (lambda x, b: (x.long(), b), TypeError, "x must be float32 or float64"),
    (lambda x, b: (x, b.int()), TypeError, "codebooks must be float32 or float64"),
    (lambda x, b: (x.half(), b.half()), TypeError, "float32 or float64"),
    (lambda x, b: (x, b.double()), TypeError, "codebooks has dtype torch.float64, expected torch.float32 like x"),
    (lambda x, b: (x.clone().fill_(float("nan")), b), ValueError, "x contains NaN or inf"),
    (lambda x, b: (torch.cat([x, torch.full_like(x[:1], float("inf"))]), b), ValueError, "x contains NaN or inf"),
    (lambda x, b: (x, b[:0]), ValueError, "L >= 1"),
    (lambda x, b: (x, b[:, :0]), ValueError, "K >= 1"),
    (lambda x, b: (x.numpy(), b), TypeError, "x must be a torch.Tensor"),
    (lambda x, b: (x, torch.full_like(b, float("nan"))), ValueError, "codebooks contains NaN"),
]


@pytest.mark.parametrize("backend,device", FUSED + [pytest.param("torch", "cpu", id="torch")])
@pytest.mark.parametrize("case", range(len(BAD_INPUTS)))
def test_bad_input_names_the_argument(backend, device, case):
    make, error, message = BAD_INPUTS[case]
    x, books = make_inputs(10, 7, 6, 2)
    x, books = make(x, books)
    if device == "cuda" and isinstance(x, torch.Tensor):
        x, books = x.cuda(), books.cuda()
    with pytest.raises(error, match=message):
        rvq_search(x, books, backend=backend)


def test_huge_finite_values_are_not_mistaken_for_inf():
    # The fast finite check sums the inputs; an overflowing sum must fall back to the exact check, not raise.
    x = torch.full((4, 3), 3e38)
    books = torch.zeros(1, 2, 3)
    books[0, 1] = 1.0
    codes, _, _ = rvq_search(x, books, backend="torch")
    assert codes.shape == (4, 1)


def test_bad_temperature_and_backend():
    x, books = make_inputs(10, 7, 6, 2)
    with pytest.raises(ValueError, match="temperature"):
        rvq_search(x, books, temperature=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        rvq_search(x, books, temperature=float("nan"))
    with pytest.raises(ValueError, match="backend= must be one of"):
        rvq_search(x, books, backend="numba")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mixed_devices_are_rejected():
    x, books = make_inputs(10, 7, 6, 2)
    with pytest.raises(ValueError, match="codebooks is on cuda:0 but x is on cpu"):
        rvq_search(x, books.cuda())
    with pytest.raises(ValueError, match="cpp backend takes CPU tensors"):
        rvq_search(x.cuda(), books.cuda(), backend="cpp")


def test_cpu_tensors_never_reach_cuda_kernels():
    x, books = make_inputs(10, 7, 6, 2)
    with pytest.raises((ValueError, RuntimeError), match="cuda"):
        rvq_search(x, books, backend="cuda")


COMPILED_DEVICES = [
    pytest.param("cpu", marks=pytest.mark.skipif(not backends()["cpp"].available, reason="fastmotion._C not built")),
    pytest.param("cuda", marks=pytest.mark.skipif(not backends()["cuda"].available, reason=backends()["cuda"].reason)),
]


@pytest.mark.parametrize("device", COMPILED_DEVICES)
def test_compiled_entry_points_check_too(device):
    x, books = make_inputs(10, 7, 6, 2, device=device)
    op = torch.ops.fastmotion.rvq_search
    with pytest.raises(RuntimeError, match="x must be 2-D"):
        op(x[0], books, 0.0, 0)
    with pytest.raises(RuntimeError, match="D=5"):
        op(x[:, :5], books, 0.0, 0)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        op(x.long(), books, 0.0, 0)
    with pytest.raises(RuntimeError, match=r"L >= 1 and K >= 1, got \[2, 0, 6\]"):
        op(x, books[:, :0], 0.0, 0)
    with pytest.raises(RuntimeError, match="temperature must be finite and >= 0, got -1.5"):
        op(x, books, -1.5, 0)


def test_env_var_selects_backend(monkeypatch):
    x, books = make_inputs(10, 7, 6, 2)
    monkeypatch.setenv("FASTMOTION_BACKEND", "nope")
    with pytest.raises(ValueError, match="FASTMOTION_BACKEND must be one of"):
        rvq_search(x, books)
    monkeypatch.setenv("FASTMOTION_BACKEND", "torch")
    assert rvq_search(x, books)[1].grad_fn is None  # reference path: no custom Function
    rvq_search(x, books, backend="torch")


@pytest.mark.skipif(not backends()["cpp"].available, reason="fastmotion._C not built")
def test_opcheck_and_torch_compile_fullgraph():
    x, books = make_inputs(50, 9, 8, 3)
    torch.library.opcheck(torch.ops.fastmotion.rvq_search.default, (x, books, 0.0, 0))

    def loss(x, books):
        codes, q, r = rvq_search(x, books, backend="cpp")
        return (q * q).sum() + r.sum() + codes.sum()

    books_eager = books.clone().requires_grad_()
    books_comp = books.clone().requires_grad_()
    expected = loss(x, books_eager)
    expected.backward()
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")  # fullgraph: a graph break raises
    got = compiled(x, books_comp)
    got.backward()
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(books_comp.grad, books_eager.grad)


def test_reference_gumbel_is_standard_gumbel():
    g = reference.gumbel_noise(123, 0, torch.arange(400), torch.arange(500)).double()
    assert abs(g.mean().item() - 0.5772) < 0.01  # Euler-Mascheroni
    assert abs(g.var().item() - torch.pi**2 / 6) < 0.03
    assert not torch.equal(g, reference.gumbel_noise(123, 1, torch.arange(400), torch.arange(500)).double())
