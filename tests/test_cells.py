"""Each cell against a literal float64 implementation of the paper's equations, plus parameter
counts, gradient flow and the identity-recurrence property; the options (modReLU, orthogonal
recurrent blocks) on every cell that takes them; structured recurrences against their dense
matrices and parallel scans against the step loop."""

from __future__ import annotations

import functools

import pytest
import torch
from conftest import CELL_CLASSES
from reference import reference_layer, reference_of

from rnncap.cells import GRUCell, IntersectionCell, LSTMCell, RNNCell, UGRNNCell
from rnncap.cells.indrnn import IndRNNCell
from rnncap.cells.lru import LRUCell
from rnncap.core.sizing import hidden_for_budget
from rnncap.core.stack import RecurrentStack, count_parameters

# every cell class (discovered from conf/cell) with every nonlinearity it allows
VARIANTS = [(cls, s) for cls in CELL_CLASSES for s in cls.allowed_nonlinearities]
ORTHOGONAL = [
    (cls, kind) for cls in CELL_CLASSES if cls.allows_orthogonal for kind in ("exp", "cayley")
]
# constructor options beyond the defaults, on every class that takes them
MODRELU = [cls for cls, s in VARIANTS if s == "modrelu" and cls.allowed_nonlinearities[0] != s]
OPTIONS = (
    [(cls, {"nonlinearity": "modrelu"}) for cls in MODRELU]
    + [(cls, {"orthogonal": kind}) for cls, kind in ORTHOGONAL]
    + [(LRUCell, {"block": "none"})]  # the bare LRU layer (the default is the paper's block)
)
SCANNED = [cls for cls in CELL_CLASSES if hasattr(cls, "use_scan")]
STRUCTURED = [cls for cls in CELL_CLASSES if reference_of(cls).matrix is not None]


def option_id(case) -> str:
    cls, options = case
    return f"{cls.__name__}-" + "-".join(f"{k}={v}" for k, v in options.items())


def option_params(cls, options, i, n) -> int:
    """One layer's count with options, from the reference's formula: + N modReLU biases; an
    orthogonal N x N block trains its generator's N(N-1)/2 entries, not N^2."""
    count = reference_of(cls).param_count(i, n)
    if "block" in options:  # the LRU's: the reference's count takes it
        count = reference_of(cls).params(i, n, block=options["block"])
    if options.get("nonlinearity") == "modrelu":
        count += n
    if options.get("orthogonal"):
        count -= len(reference_of(cls).gates) * (n * n - n * (n - 1) // 2)
    return count


def layer_input(cls, size=5, hidden=4):
    """An input size the cell accepts (the +RNN's depth path needs input size == hidden)."""
    return hidden if cls.needs_square_input else size


def randomised(cls, nonlinearity, input_size=5, hidden=4, gate_bias=0.7, **options):
    torch.manual_seed(0)
    cell = cls(input_size, hidden, nonlinearity=nonlinearity, gate_bias=gate_bias, **options)
    cell = cell.double()
    with torch.no_grad():  # non-zero biases and initial states, so the test sees them
        for p in cell.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return cell


@pytest.mark.parametrize("native", [True, False], ids=["native", "loop"])
@pytest.mark.parametrize(("cls", "nonlinearity"), VARIANTS)
def test_cell_matches_float64_reference(cls, nonlinearity, native):
    size = layer_input(cls)
    cell = randomised(cls, nonlinearity, input_size=size)
    cell.use_native = native
    x = torch.randn(6, 3, size, dtype=torch.float64)
    torch.testing.assert_close(cell(x), reference_layer(cell, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("native", [True, False], ids=["native", "loop"])
@pytest.mark.parametrize(("cls", "kind"), ORTHOGONAL)
def test_orthogonal_cell_matches_float64_reference(cls, kind, native):
    """The equations read the parametrised (orthogonal) weight_hh like any other."""
    cell = randomised(cls, "tanh", orthogonal=kind)
    cell.use_native = native
    x = torch.randn(6, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(cell(x), reference_layer(cell, x), rtol=1e-12, atol=1e-12)


NATIVE = [(RNNCell, "tanh"), (RNNCell, "relu"), (LSTMCell, "tanh")]


def test_native_kernel_used_exactly_where_the_math_matches():
    found = [(c, s) for c, s in VARIANTS if c(4, 4, nonlinearity=s).native_available()]
    assert found == NATIVE


NATIVE_OPTIONS = [(c, s, {}) for c, s in NATIVE] + [
    (c, s, {"orthogonal": kind}) for c, s in NATIVE if c.allows_orthogonal for kind in ("exp",)
]


@pytest.mark.parametrize(("cls", "nonlinearity", "options"), NATIVE_OPTIONS)
def test_native_path_gradients_equal_step_loop(cls, nonlinearity, options):
    """Fused kernel and step loop: same outputs and same gradients for every parameter (f64),
    also when the kernel gets a parametrised (orthogonal) weight_hh."""
    x = torch.randn(5, 3, 5, dtype=torch.float64)
    grads = []
    for native in (True, False):
        cell = randomised(cls, nonlinearity, gate_bias=0.7, **options)
        cell.use_native = native
        cell(x).sin().sum().backward()
        grads.append({n: p.grad for n, p in cell.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("cls", "nonlinearity"), VARIANTS)
def test_gate_bias_changes_output_only_for_gated_cells(cls, nonlinearity):
    size = layer_input(cls)
    x = torch.randn(4, 2, size, dtype=torch.float64)
    a = randomised(cls, nonlinearity, input_size=size, gate_bias=0.0)(x)
    b = randomised(cls, nonlinearity, input_size=size, gate_bias=2.0)(x)
    assert torch.allclose(a, b) == (not cls.forget_gates)


@pytest.mark.parametrize("cls", CELL_CLASSES)
@pytest.mark.parametrize(("i", "n"), [(3, 7), (16, 1), (10, 10)])
def test_layer_param_count_matches_paper_formula(cls, i, n):
    """G*(N*(I+N)+N) + the learned initial state(s), or the cell's own formula (reference)."""
    i = layer_input(cls, i, n)
    expected = reference_of(cls).param_count(i, n)  # G*(N*(I+N)+N) + initial h (and c), or
    # the count the reference states for a cell without packed N x N blocks
    if cls is IntersectionCell:
        assert expected - n == 8 * n * n + 4 * n
    cell = cls(i, n)
    assert count_parameters(cell) == cls.param_count(i, n) == expected


@pytest.mark.parametrize(("cls", "options"), OPTIONS, ids=map(option_id, OPTIONS))
@pytest.mark.parametrize(("i", "n"), [(3, 7), (16, 1), (10, 10)])
def test_layer_param_count_with_options(cls, options, i, n):
    i = layer_input(cls, i, n)
    cell = cls(i, n, **options)
    expected = option_params(cls, options, i, n)
    assert count_parameters(cell) == cls.param_count(i, n, **options) == expected


STACKED = [(cls, {}) for cls in CELL_CLASSES] + OPTIONS


@pytest.mark.parametrize(("cls", "options"), STACKED, ids=map(option_id, STACKED))
@pytest.mark.parametrize("depth", [2, 3])
def test_stack_param_count_is_exact_and_gradient_reaches_every_parameter(cls, options, depth):
    cell = functools.partial(cls, gate_bias=1.0, **options)
    stack = RecurrentStack(cell, depth, 6, 5, 2)
    assert count_parameters(stack) == RecurrentStack.param_count(cell, depth, 6, 5, 2)
    stack(torch.randn(3, 4, 6)).square().sum().backward()
    for name, p in stack.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cls", CELL_CLASSES)
def test_each_layer_reads_the_depth_output_below(cls):
    """The next layer's and the readout's input size is the layer's depth output size
    (N, the uRNN's 2N, the LRU's input width)."""
    stack = RecurrentStack(cls, 3, 6, 5, 2).double()
    h = torch.randn(7, 4, 6, dtype=torch.float64).transpose(0, 1)
    h = stack.projection(h) if stack.projection is not None else h
    for layer in stack.layers:
        assert layer.input_size == h.shape[-1]
        h = layer(h)
        assert h.shape[-1] == layer.output_size == cls.layer_output_size(layer.input_size, 5)
    assert stack.readout.in_features == h.shape[-1]


def test_intersection_stack_projects_input_and_reads_depth_output():
    stack = RecurrentStack(IntersectionCell, 2, 6, 5, 1)
    assert stack.projection is not None and stack.projection.in_features == 6
    expected = (6 * 5 + 5) + 2 * (8 * 25 + 4 * 5 + 5) + (5 + 1)
    assert count_parameters(stack) == expected


def test_identity_recurrence_holds_state_without_input():
    """IRNN: with zero input weights, zero bias and W_h = I, a ReLU state stays constant."""
    cell = RNNCell(3, 4, nonlinearity="relu", recurrent_init="identity").double()
    with torch.no_grad():
        cell.weight_ih.zero_()
        cell.initial_h.copy_(torch.tensor([0.5, 1.0, 2.0, 0.0]))
    y = cell(torch.randn(5, 2, 3, dtype=torch.float64))
    assert torch.equal(y, cell.initial_h.detach().expand(5, 2, 4))


def test_recurrent_inits_and_scale():
    eye = RNNCell(2, 3, recurrent_init="identity", recurrent_scale=0.5)
    assert torch.equal(eye.weight_hh.detach(), 0.5 * torch.eye(3))
    orth = GRUCell(2, 6, recurrent_init="orthogonal", recurrent_scale=2.0)
    for block in orth.weight_hh.detach().split(6):
        torch.testing.assert_close(block @ block.T, 4.0 * torch.eye(6), atol=1e-5, rtol=0)


def test_chain_init_is_the_scaled_superdiagonal_in_every_block():
    """Orhan & Pitkow 2020: recurrent_scale on the first superdiagonal, zeros elsewhere."""
    chain = 1.5 * torch.diag(torch.ones(3), 1)
    rnn = RNNCell(2, 4, recurrent_init="chain", recurrent_scale=1.5)
    assert torch.equal(rnn.weight_hh.detach(), chain)
    gru = GRUCell(2, 4, recurrent_init="chain", recurrent_scale=1.5)
    for block in gru.weight_hh.detach().split(4):
        assert torch.equal(block, chain)


@pytest.mark.parametrize("cls", CELL_CLASSES)
def test_square_recurrent_says_whether_chain_applies(cls):
    """``square_recurrent`` is true exactly for cells with N x N recurrent blocks; the others
    refuse recurrent_init=chain."""
    if cls.square_recurrent:
        weight_hh = cls(layer_input(cls, 3, 4), 4, recurrent_init="chain").weight_hh
        assert weight_hh.dim() == 2 and weight_hh.shape[1] == 4
        assert weight_hh.shape[0] % 4 == 0
    else:
        with pytest.raises(ValueError, match="cell.recurrent_init='chain'"):
            cls(3, 4, recurrent_init="chain")


def test_indrnn_recurrent_vector_inits():
    """IndRNN's u: U(0, 1) (the authors' ReLU choice) or ones, times recurrent_scale."""
    torch.manual_seed(0)
    u = IndRNNCell(3, 500, recurrent_scale=2.0).weight_hh.detach()
    assert u.shape == (500,) and u.min() >= 0 and u.max() < 2.0 and u.std() > 0.5
    ones = IndRNNCell(3, 5, recurrent_init="identity", recurrent_scale=0.9).weight_hh
    assert torch.equal(ones.detach(), torch.full((5,), 0.9))


def test_bad_cell_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="cell.nonlinearity='sigmoid'"):
        RNNCell(2, 3, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="cell.recurrent_init='random'"):
        GRUCell(2, 3, recurrent_init="random")
    with pytest.raises(ValueError, match="input size == hidden size"):
        IntersectionCell(2, 3)


@pytest.mark.parametrize(("cls", "options"), STACKED, ids=map(option_id, STACKED))
@pytest.mark.parametrize(("depth", "budget"), [(1, 500), (2, 1000), (4, 20000)])
def test_budget_sizing_picks_largest_fitting_width(cls, options, depth, budget):
    if cls.needs_square_input and depth == 1:
        depth = 2
    cell = functools.partial(cls, **options)

    def count(n):
        return RecurrentStack.param_count(cell, depth, 16, n, 1)

    n = hidden_for_budget(cell, depth, 16, 1, budget)
    assert count(n) <= budget < count(n + 1)
    assert count_parameters(RecurrentStack(cell, depth, 16, n, 1)) == count(n)


def test_budget_too_small_for_one_unit():
    with pytest.raises(ValueError, match="model.budget=10 is too small"):
        hidden_for_budget(LSTMCell, 2, 16, 1, 10)


def _compiler_missing() -> str | None:
    """Why torch.compile cannot run here (None when it can)."""
    import shutil

    if shutil.which("cc") is None and shutil.which("gcc") is None:
        return "torch.compile's CPU backend needs a C++ compiler; none is on PATH"
    return None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cls", "nonlinearity"), [(GRUCell, "tanh"), (UGRNNCell, "relu"), (IntersectionCell, "tanh")]
)
def test_compiled_step_equals_reference_and_eager_gradients(cls, nonlinearity):
    """cell.compile=true (torch.compile of the step, CPU, float64): the reference equations'
    outputs, and the eager step loop's gradients for every parameter."""
    reason = _compiler_missing()
    if reason:
        pytest.skip(reason)
    size = layer_input(cls)
    x = torch.randn(6, 3, size, dtype=torch.float64)
    grads = []
    for compiled in (False, True):
        cell = randomised(cls, nonlinearity, input_size=size)
        cell.compile_step = compiled
        out = cell(x)
        torch.testing.assert_close(out, reference_layer(cell, x), rtol=1e-12, atol=1e-12)
        out.sin().sum().backward()
        grads.append({n: p.grad for n, p in cell.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- options and structures
@pytest.mark.parametrize(("cls", "kind"), ORTHOGONAL)
def test_orthogonal_blocks_stay_orthogonal_after_training(cls, kind):
    """cell.orthogonal: W^T W = I (1e-5) for every N x N recurrent block after 100 Adam steps
    that moved the weights, in float32 as training runs."""
    torch.manual_seed(0)
    stack = RecurrentStack(functools.partial(cls, orthogonal=kind), 2, 6, 8, 1)
    before = [layer.weight_hh.detach().clone() for layer in stack.layers]
    optimizer = torch.optim.Adam(stack.parameters(), lr=0.05)
    x, y = torch.randn(16, 5, 6), torch.randn(16, 5, 1)
    for _ in range(100):
        optimizer.zero_grad()
        (stack(x) - y).square().mean().backward()
        optimizer.step()
    for layer, w0 in zip(stack.layers, before, strict=True):
        w = layer.weight_hh.detach()
        assert (w - w0).abs().max() > 0.1  # trained, not frozen
        for block in w.split(8):
            torch.testing.assert_close(block.T @ block, torch.eye(8), rtol=0, atol=1e-5)


@pytest.mark.parametrize("cls", STRUCTURED)
def test_structured_recurrence_is_its_dense_unitary_matrix(cls):
    """The cell's product of structured factors equals the dense matrix of the paper's
    factors (1e-12), and that matrix is unitary (W^* W = I to 1e-10)."""
    cell = randomised(cls, cls.allowed_nonlinearities[0], input_size=5, hidden=7)
    product, dense = reference_of(cls).matrix(cell)
    torch.testing.assert_close(product, dense, rtol=1e-12, atol=1e-12)
    eye = torch.eye(7, dtype=dense.dtype)
    torch.testing.assert_close(dense.conj().T @ dense, eye, rtol=0, atol=1e-10)


@pytest.mark.parametrize("cls", SCANNED)
@pytest.mark.parametrize("steps", [1, 2, 13])
def test_parallel_scan_equals_step_loop(cls, steps):
    """The parallel scan over time: the reference's outputs, and the step loop's outputs and
    gradients for every parameter (float64)."""
    x = torch.randn(steps, 3, 5, dtype=torch.float64)
    grads = []
    for scan in (True, False):
        cell = randomised(cls, cls.allowed_nonlinearities[0])
        cell.use_scan = scan
        out = cell(x)
        torch.testing.assert_close(out, reference_layer(cell, x), rtol=1e-12, atol=1e-12)
        out.sin().sum().backward()
        grads.append({n: p.grad for n, p in cell.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", MODRELU)
def test_modrelu_has_a_dead_zone_and_keeps_the_sign(cls):
    """Real modReLU: sign(z) ReLU(|z| + b): 0 where |z| < -b, z + sign(z) b elsewhere."""
    cell = cls(2, 3, nonlinearity="modrelu")
    with torch.no_grad():
        cell.modrelu_bias.fill_(-0.5)
    z = torch.tensor([[-2.0, -0.3, 0.4], [1.0, 0.0, -0.6]])
    expected = torch.tensor([[-1.5, 0.0, 0.0], [0.5, 0.0, -0.1]])
    torch.testing.assert_close(cell.act(z), expected)


# ------------------------------------------------------------------ the LRU block
@pytest.mark.parametrize("scan", [True, False], ids=["scan", "loop"])
def test_bare_lru_layer_matches_float64_reference(scan):
    """cell.block=none: the layer alone, y = Re(C x) + D u, against the equations."""
    cell = randomised(LRUCell, "linear", block="none")
    cell.use_scan = scan
    x = torch.randn(6, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(cell(x), reference_layer(cell, x), rtol=1e-12, atol=1e-12)


def test_lru_block_is_the_layer_inside_norm_gelu_glu_and_skip():
    """The block, by hand from the bare layer of the same weights: u + (W_1 g + b_1) *
    sigmoid(W_2 g + b_2), g = GELU(layer(LayerNorm(u))); with zero GLU weights and biases
    the block is the identity (the skip alone)."""
    block = randomised(LRUCell, "linear")
    bare = LRUCell(5, 4, block="none").double()
    bare.load_state_dict(block.state_dict(), strict=False)
    u = torch.randn(7, 2, 5, dtype=torch.float64)
    mean, var = u.mean(-1, keepdim=True), u.var(-1, unbiased=False, keepdim=True)
    v = (u - mean) / (var + 1e-6).sqrt() * block.norm_weight + block.norm_bias
    g = torch.nn.functional.gelu(bare(v), approximate="tanh")
    w1, w2 = block.glu_weight.chunk(2)
    b1, b2 = block.glu_bias.chunk(2)
    expected = u + (g @ w1.T + b1) * torch.sigmoid(g @ w2.T + b2)
    torch.testing.assert_close(block(u), expected, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        block.glu_weight.zero_()
        block.glu_bias.zero_()
    assert torch.equal(block(u), u)


def test_lru_block_dropout_acts_in_training_only_with_one_mask_per_sequence():
    torch.manual_seed(1)
    cell = randomised(LRUCell, "linear", input_size=8, dropout=0.5)
    u = torch.randn(6, 4, 8, dtype=torch.float64)
    dropped = (cell(u) - u) == 0  # the output mask zeroes the GLU's term: the skip remains
    per_sequence = dropped.all(0)
    assert per_sequence.any() and (~dropped).all(0).any()
    assert torch.equal(dropped, per_sequence.expand_as(dropped))  # the same at every step
    cell.eval()
    plain = randomised(LRUCell, "linear", input_size=8)
    torch.testing.assert_close(cell(u), plain(u), rtol=0, atol=0)


@pytest.mark.parametrize(("depth", "budget", "width"), [(1, 100, 2), (1, 300, 5), (2, 300, 3)])
def test_lru_block_stack_count_and_budget_width_by_hand(depth, budget, width):
    """Input 16, one output: the encoder 16N + N, per block 4N^2 + 5N + N (the layer at
    H = N) + 2N + 2(N^2 + N) = 6N^2 + 10N, the readout N + 1."""

    def by_hand(n):
        return 17 * n + depth * (6 * n * n + 10 * n) + n + 1

    assert hidden_for_budget(LRUCell, depth, 16, 1, budget) == width
    assert by_hand(width) <= budget < by_hand(width + 1)
    stack = RecurrentStack(LRUCell, depth, 16, width, 1)
    assert stack.projection is not None
    assert count_parameters(stack) == RecurrentStack.param_count(LRUCell, depth, 16, width, 1)
    assert count_parameters(stack) == by_hand(width)
