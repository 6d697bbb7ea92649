"""The measuring workers' shared pieces (perfmodel.torch.worker, torch-free): the step's call order, the timing
loop and the rank result files."""

from perfmodel.torch.worker import read_results, result_path, timed_steps, training_step, write_result


class _Loss:
    def __init__(self, calls):
        self.calls = calls

    def backward(self):
        self.calls.append("backward")


class _Opt:
    def __init__(self, calls):
        self.calls = calls

    def zero_grad(self, set_to_none=False):
        self.calls.append(("zero_grad", set_to_none))

    def step(self):
        self.calls.append("step")


def test_training_step_runs_zero_grad_forward_backward_step_in_order():
    calls = []

    def forward():
        calls.append("forward")
        return _Loss(calls)

    step = training_step(_Opt(calls), forward)
    assert calls == []  # building the step runs nothing
    step()
    assert calls == [("zero_grad", True), "forward", "backward", "step"]


def test_timed_steps_times_each_call_once():
    n = []
    times = timed_steps(lambda: n.append(1), 5)
    assert len(n) == 5 and len(times) == 5 and all(t >= 0 for t in times)
    assert timed_steps(lambda: n.append(1), 0) == [] and len(n) == 5


def test_results_round_trip_in_rank_order(tmp_path):
    write_result(tmp_path, 1, {"times": [0.5]})
    write_result(tmp_path, 0, [1, 2])
    assert result_path(tmp_path, 1).name == "rank1.json"
    assert read_results(tmp_path, 2) == [[1, 2], {"times": [0.5]}]
