"""First-pass perfusion + delayed T1 maps of one injection: signal to concentration, one AIF, one 2CXM fit
(analysis/perfusion.py, analysis/tcxm.HybridAif, analysis/ddce_joint.py). Truth from the phantoms, whose
tissue curves come from explicit integration of the 2CXM equations, not from the fitter's convolution."""
import numpy as np
import pytest

import analysis.tcxm as tcxm
from analysis.ddce import analyse_slice, region_inputs
from analysis.ddce_joint import JointCurves, joint_aif, mbf_ml_per_min_per_g, profile_joint_region
from analysis.ddce_uncertainty import flow_limited
from analysis.errors import AnalysisError
from analysis.perfusion import arterial_input_mask, baseline_frame_count, first_pass_concentration
from analysis.phantoms.ddce import blood_aif_mM, ddce_phantom, tissue_curve_numerical
from analysis.phantoms.first_pass import first_pass_phantom
from analysis.phantoms.short_axis import Region
from analysis.phantoms.t1_ecv import NATIVE_T1_MS

HCT = 0.42


def _native_t1(labels):
    t1 = np.zeros(labels.shape)
    for region in Region:
        t1[labels == region] = NATIVE_T1_MS.get(region, 0.0)
    return t1


@pytest.mark.parametrize("scale_from", ["proton-density frames", "native T1 map"])
def test_saturation_recovery_signal_gives_back_the_concentration(scale_from):
    fp = first_pass_phantom(noise_fraction=0.0)
    blood = fp.labels == Region.LV_BLOOD
    extra = dict(pd_frames=fp.pd_frames, flip_deg=fp.flip_deg, pd_flip_deg=fp.pd_flip_deg) \
        if scale_from == "proton-density frames" else dict(t1_native_ms=_native_t1(fp.labels))
    conc = first_pass_concentration(fp.frames, blood, fp.ts_ms, 5.2, **extra)
    assert conc.scale_from == scale_from
    for region in (Region.LV_BLOOD, Region.REMOTE, Region.INFARCT):
        mask = fp.labels == region
        curve, saturated = conc.region(mask)
        assert saturated == 0
        np.testing.assert_allclose(curve, fp.concentration_mM[:, mask][:, 0], atol=1e-6)


def test_without_t1_map_or_pd_frames_the_native_t1_is_assumed_and_said():
    fp = first_pass_phantom(noise_fraction=0.0, pd_count=0)
    conc = first_pass_concentration(fp.frames, fp.labels == Region.LV_BLOOD, fp.ts_ms, 5.2, field_strength_t=1.5)
    assert conc.scale_from.startswith("assumed native T1 1000 ms")
    remote = fp.labels == Region.REMOTE      # its true native T1 is the assumed one
    np.testing.assert_allclose(conc.region(remote)[0], fp.concentration_mM[:, remote][:, 0], atol=1e-6)


def test_a_saturating_aif_is_refused_not_clipped():
    """A double dose puts blood at 12 mmol/L, where S/k at TS 100 ms passes 0.98: the peak cannot be measured."""
    fp = first_pass_phantom(noise_fraction=0.0, dose_scale=2.0)
    blood = fp.labels == Region.LV_BLOOD
    conc = first_pass_concentration(fp.frames, blood, fp.ts_ms, 5.2, pd_frames=fp.pd_frames, flip_deg=fp.flip_deg,
                                    pd_flip_deg=fp.pd_flip_deg)
    with pytest.raises(AnalysisError, match="AIF saturates in"):
        conc.arterial_input(blood)
    normal = first_pass_phantom(noise_fraction=0.0)
    conc = first_pass_concentration(normal.frames, blood, normal.ts_ms, 5.2, pd_frames=normal.pd_frames,
                                    flip_deg=normal.flip_deg, pd_flip_deg=normal.pd_flip_deg)
    assert conc.arterial_input(blood).max() == pytest.approx(normal.concentration_mM[:, blood].max(), rel=1e-3)


def test_first_pass_noise_is_propagated_from_the_signal_noise():
    """The expected SD of each voxel's concentration, dS / (k TS (1 - S/k) r1), against the scatter the phantom's
    signal noise actually leaves in the remote myocardium's concentration, frame by frame."""
    fp = first_pass_phantom(noise_fraction=0.01)
    remote = fp.labels == Region.REMOTE
    conc = first_pass_concentration(fp.frames, fp.labels == Region.LV_BLOOD, fp.ts_ms, 5.2, pd_frames=fp.pd_frames,
                                    flip_deg=fp.flip_deg, pd_flip_deg=fp.pd_flip_deg)
    predicted = conc.noise_sd_mM(remote, remote)                      # (F, voxels)
    scatter = (conc.c_mM[:, remote] - fp.concentration_mM[:, remote]).std(axis=1)
    np.testing.assert_allclose(np.median(predicted, axis=1), scatter, rtol=0.2)


def test_an_arterial_input_series_finds_its_lv_blood_pool_and_measures_a_double_dose_peak():
    """A dual-sequence protocol's AIF series: 80x80 at 3 mm, TS 20 ms, 0.2 mmol/kg. The LV, not the RV whose
    bolus comes 4 s earlier, and the 12 mmol/L peak that a 100-ms series cannot measure."""
    from analysis.perfusion import find_lv_blood_pool
    from analysis.phantoms.short_axis import SliceGeometry
    fp = first_pass_phantom(geometry=SliceGeometry(matrix=80, pixel_mm=3.0), ts_ms=20.0, dose_scale=2.0)
    pool = find_lv_blood_pool(fp.frames)
    lv = fp.labels == Region.LV_BLOOD
    assert (pool == lv).all()
    conc = first_pass_concentration(fp.frames, pool, fp.ts_ms, 5.2, pd_frames=fp.pd_frames, flip_deg=fp.flip_deg,
                                    pd_flip_deg=fp.pd_flip_deg)
    np.testing.assert_allclose(conc.arterial_input(pool), fp.concentration_mM[:, lv][:, 0], atol=0.01 * 12.1)


def test_mbf_is_plasma_flow_over_plasma_fraction_per_gram():
    assert mbf_ml_per_min_per_g(0.63, 0.42) == pytest.approx(0.63 / 1.05 / 0.58)


def test_the_tissue_sees_the_aif_later_by_the_delay():
    from analysis.ddce_joint import _JointProblem
    def plasma(t):
        return blood_aif_mM(np.asarray(t, float)) / (1 - HCT)
    t_fp, t_maps = np.arange(-8, 45, 0.9) / 60, np.array([1, 2, 3, 4, 5.0])
    aif = joint_aif(t_fp, plasma(t_fp), t_maps, plasma(t_maps))
    x = np.array([0.13, 0.06, np.log(0.63), np.log(0.44), 3.0])        # delay 3 s

    def model(times, delay_s):     # the residual against zero data with unit errors
        times = np.asarray(times, float)
        curves = JointCurves(times, np.zeros(times.size), np.ones(times.size), np.zeros(0), np.zeros(0), np.zeros(0))
        return _JointProblem(curves, aif).residual(np.append(x[:4], delay_s))
    t = np.linspace(0.1, 0.7, 25)
    np.testing.assert_allclose(model(t, 3.0), model(t - 3.0 / 60, 0.0), atol=1e-9)


def test_baseline_ends_before_the_contrast_arrives():
    fp = first_pass_phantom(noise_fraction=0.0)
    blood_signal = fp.frames[:, fp.labels == Region.LV_BLOOD].mean(axis=1)
    n = baseline_frame_count(blood_signal)
    assert n >= 2 and np.all(fp.concentration_mM[:n][:, fp.labels == Region.LV_BLOOD] < 1e-3)
    with pytest.raises(AnalysisError, match="before the contrast arrives"):
        baseline_frame_count(blood_signal[int(np.argmax(blood_signal)) - 3:])   # starts on the upslope


def test_edge_voxels_leave_the_arterial_input():
    mask = np.zeros((20, 20), dtype=bool)
    mask[5:15, 5:15] = True
    core = arterial_input_mask(mask)
    assert core.sum() == 64 and not core[5].any()
    small = np.zeros((20, 20), dtype=bool)
    small[5:9, 5:9] = True
    assert (arterial_input_mask(small) == small).all()    # too small to erode


def test_one_aif_convolves_exactly_across_first_pass_and_tail():
    """HybridAif against explicit integration of the 2CXM driven by the same input."""
    def plasma(t):
        return blood_aif_mM(np.asarray(t, float)) / (1 - HCT)
    t_fp, t_maps = np.arange(-8, 45, 0.9) / 60, np.array([1, 2, 3, 4, 5.0])
    aif = joint_aif(t_fp, plasma(t_fp), t_maps, plasma(t_maps))
    t = np.concatenate([t_fp[t_fp > 0], t_maps])
    numerical = tissue_curve_numerical(t, 0.13, 0.06, 0.63, 0.44, aif, dt=0.0002)
    analytic = tcxm.tissue_concentration(t, np.array([0.63]), np.array([0.44]), np.array([0.06]),
                                         np.array([0.13]), aif)[0]
    np.testing.assert_allclose(analytic, numerical, atol=2e-3 * numerical.max())


def test_hybrid_convolution_takes_times_in_any_order():
    """HybridAif evaluates the linear part and the tail separately: times in any order give the same values."""
    t_fp = np.arange(-8, 45, 0.9) / 60
    aif = joint_aif(t_fp, blood_aif_mM(t_fp) / (1 - HCT), np.array([1, 2, 3, 4, 5.0]),
                    blood_aif_mM(np.array([1, 2, 3, 4, 5.0])) / (1 - HCT))
    t = np.concatenate([t_fp[t_fp > 0], [1.5, 3.0, 4.5]])
    rates = np.array([[0.3], [4.0], [90.0]])
    order = np.random.default_rng(2).permutation(t.size)
    np.testing.assert_allclose(aif.convolve_exponential(t[order], rates), aif.convolve_exponential(t, rates)[:, order],
                               rtol=1e-12)


@pytest.mark.parametrize("uniform", [False, True])
def test_the_three_ways_of_convolving_agree(monkeypatch, uniform):
    """Few rates: a cumulative sum (slow rates) or a masked matrix product (fast ones); many: the recursion."""
    t = np.linspace(-0.1, 1.0, 70) if uniform else np.sort(np.random.default_rng(1).uniform(-0.1, 1.0, 70))
    aif = tcxm.SampledAif(t, blood_aif_mM(t))
    rates = np.geomspace(0.01, 5000.0, 2 * tcxm.RECURSION_MIN_ROWS)[:, np.newaxis]
    at = np.linspace(-0.2, 1.0, 50)
    recursion = aif.convolve_exponential(at, rates)
    few = np.vstack([aif.convolve_exponential(at, rates[i:i + 8]) for i in range(0, len(rates), 8)])
    np.testing.assert_allclose(few, recursion, atol=1e-12)
    monkeypatch.setattr(tcxm, "CUMSUM_MAX_EXPONENT", -1.0)          # every rate by the matrix product
    matrix = np.vstack([aif.convolve_exponential(at, rates[i:i + 8]) for i in range(0, len(rates), 8)])
    np.testing.assert_allclose(matrix, recursion, atol=1e-12)


@pytest.mark.parametrize("kind", ["biexponential", "sampled", "hybrid"])
def test_model_partials_equal_its_derivatives(kind):
    """tissue_concentration_partials (what the fits' Jacobians are built from) against central differences of
    tissue_concentration in c1, a, c2, b."""
    t_fp = np.arange(-8, 45, 0.9) / 60
    plasma = blood_aif_mM(t_fp) / (1 - HCT)
    aif = {"biexponential": tcxm.BiexpAif(5.0, 3.0, 1.5, 0.1), "sampled": tcxm.SampledAif(t_fp, plasma),
           "hybrid": joint_aif(t_fp, plasma, np.array([1, 2, 3, 4, 5.0]), blood_aif_mM(np.array([1, 2, 3, 4, 5.0])))
           }[kind]
    t = np.concatenate([t_fp[t_fp > 0] - 0.01, [1.5, 3.0, 4.5]])
    irf = np.column_stack(tcxm.irf_exponentials(np.array([0.63, 2.0, 0.1]), np.array([0.44, 5.0, 0.05]),
                                                np.array([0.06, 0.1, 0.02]), np.array([0.13, 0.3, 0.5])))

    def model(q):
        c1, a, c2, b = (q[:, i:i + 1] for i in range(4))
        return c1 * aif.convolve_exponential(t, a) + c2 * aif.convolve_exponential(t, b)
    value, partials = tcxm.tissue_concentration_partials(t, irf, aif)
    np.testing.assert_allclose(value, model(irf), rtol=1e-12)
    for i in range(4):
        step = np.zeros_like(irf)
        step[:, i] = 1e-5 * np.abs(irf[:, i])
        central = (model(irf + step) - model(irf - step)) / (2 * step[:, i:i + 1])
        np.testing.assert_allclose(partials[..., i], central, atol=1e-4 * np.abs(central).max())


def test_flow_limited_where_extraction_near_one_fits():
    assert flow_limited(4.0, 10.0) and flow_limited(1.0, 2.0)       # best PS/Fp >= 3, or PS = 3 Fp fits
    assert not flow_limited(0.7, 30.0)


@pytest.fixture(scope="module")
def joint_regions():
    """The dDCE phantom's 5-minute window with the first-pass series of the same injection (arterial delay
    2 s), each region fitted jointly."""
    delayed = ddce_phantom(delay_s=2.0)
    first = first_pass_phantom(delay_s=2.0)
    result = analyse_slice(delayed.t1_native_ms, delayed.t1_post_ms, delayed.times_min, hematocrit=HCT,
                           r1_per_mM_s=5.2, pixel_mm=delayed.pixel_mm, windows_min=[5.0], register=False)
    window = result.windows[0]
    conc = first_pass_concentration(first.frames, result.blood_pool, first.ts_ms, 5.2,
                                    t1_native_ms=delayed.t1_native_ms, pd_frames=first.pd_frames,
                                    flip_deg=first.flip_deg, pd_flip_deg=first.pd_flip_deg)
    blood, _ = conc.region(arterial_input_mask(result.blood_pool))
    t_fp = first.times_s / 60
    aif = joint_aif(t_fp, blood / (1 - HCT), window.times_min,
                    result.blood_plasma_mM[np.isin(result.times_min, window.times_min)])
    fitted = {}
    for region in (Region.REMOTE, Region.INFARCT, Region.MVO):
        mask = (delayed.labels == region) & result.valid
        t, ct, se, _, _ = region_inputs(result, window, mask)
        voxels = conc.c_mM[:, mask]
        curves = JointCurves(t_fp, conc.region(mask)[0], voxels.std(axis=1, ddof=1) / np.sqrt(mask.sum()), t, ct, se)
        fitted[region] = profile_joint_region(curves, aif)
    return fitted, delayed.truth


@pytest.mark.integration     # a regional profile likelihood, about 10 s
def test_underestimated_errors_are_scaled_to_the_scatter():
    """Curves whose stated standard errors are a third of their noise: chi-square per degree of freedom near 9,
    the errors are scaled by its root, and the 95 % interval of PS still holds the truth."""
    def plasma(t):
        return blood_aif_mM(np.asarray(t, float)) / (1 - HCT)
    t_fp, t_maps = np.arange(-8, 45, 0.9) / 60, np.array([1, 2, 3, 4, 5.0])
    aif = joint_aif(t_fp, plasma(t_fp), t_maps, plasma(t_maps))
    t = np.concatenate([t_fp, t_maps])
    clean = tissue_curve_numerical(np.maximum(t, 0), 0.13, 0.06, 0.63, 0.44, aif, dt=0.0002) * (t > 0)
    noisy = clean + 0.009 * np.random.default_rng(4).standard_normal(t.size)
    n = t_fp.size
    curves = JointCurves(t_fp, noisy[:n], np.full(n, 0.003), t_maps, noisy[n:], np.full(t_maps.size, 0.003))
    region = profile_joint_region(curves, aif, names=("ps",))
    assert 2.2 < region.se_scale < 3.8
    low, high = region.estimates["ps"].ci95
    assert low < 0.44 < high


@pytest.mark.integration     # three regional profile likelihoods, about 40 s
def test_first_pass_identifies_remote_ps_and_mbf(joint_regions):
    fitted, truth = joint_regions
    remote = fitted[Region.REMOTE]
    ps = remote.estimates["ps"]
    low, high = (x / 1.05 for x in ps.ci95)             # mL/min/g
    assert ps.identified and not remote.flow_limited
    assert low < truth["remote"]["ps"] / 1.05 < high and 0.05 < low and high < 5.0
    mbf = mbf_ml_per_min_per_g(remote.estimates["fp"].value, HCT)
    assert mbf == pytest.approx(mbf_ml_per_min_per_g(truth["remote"]["fp"], HCT), rel=0.15)
    assert abs(remote.delay_s - 2.0) < 1.0


@pytest.mark.integration
def test_mvo_has_the_lowest_flow_and_infarct_ps_is_flow_limited(joint_regions):
    fitted, truth = joint_regions
    mvo_high = fitted[Region.MVO].estimates["fp"].ci95[1]
    for region in (Region.REMOTE, Region.INFARCT):
        assert fitted[region].estimates["fp"].ci95[0] > mvo_high
    infarct = fitted[Region.INFARCT]
    assert infarct.flow_limited
    ps = infarct.estimates["ps"]
    assert not ps.identified and ps.value is None and ps.ci95[1] is None
    assert ps.ci95[0] < truth["infarct"]["ps"]
    # delayed maps decide the infarct's large distribution volume
    total = infarct.estimates["ve_plus_vp"]
    assert total.ci95[0] - 0.01 < truth["infarct"]["ve"] + truth["infarct"]["vp"] < total.ci95[1] + 0.01
