#!/usr/bin/python3
"""Test oracle for train/loss.c and train/optim.c (tests/unit/test_loss.c, test_optim.c).

The loss functions below are line-by-line transcriptions of the public reference code
(PyTorch), so that wsml is compared with what the papers' code computes:
  - LargeLossMatters (Kim et al., CVPR 2022): losses.py `loss_an`, `compute_batch_loss`
    and train.py's clean_rate schedule and LL-Cp label flips;
  - single-positive-multi-label (Cole et al., CVPR 2021): losses.py `neg_log`,
    `expected_positive_regularizer`, `loss_an_ls`, `loss_wan`, `loss_epr`, `loss_role`,
    `compute_batch_loss`, and models.py's LabelEstimator initialisation.
Where docs/methods.md decides what the reference leaves open (LL-Cp with `==` instead of `is`,
observed entries never modified, the absolute threshold of supp. §B), the "paper"
variant below is the reference code with exactly those lines changed, marked "methods.md".

Output: a binary stream on stdout of self-describing arrays: for each array an int32
dtype code, an int32 element count, then the little-endian data.

usage: losses_ref.py loss | optim | role-init | k
"""
import math
import struct
import sys
import warnings

import numpy as np
import torch
import torch.nn.functional as F

warnings.filterwarnings("ignore")  # SyntaxWarning for the reference's `is 'LL-Cp'`
torch.set_num_threads(1)

DTYPES = {np.dtype(np.int8): 1, np.dtype(np.uint8): 2, np.dtype(np.int32): 3,
          np.dtype(np.int64): 4, np.dtype(np.float32): 5, np.dtype(np.float64): 6}
OUT = sys.stdout.buffer


def emit(a, dtype):
    a = np.ascontiguousarray(np.asarray(a, dtype=dtype)).reshape(-1)
    OUT.write(struct.pack("<ii", DTYPES[a.dtype], a.size))
    OUT.write(a.tobytes())


# ---- LargeLossMatters losses.py (transcription) -----------------------------------------

def ll_loss_an(logits, observed_labels, P):
    assert torch.min(observed_labels) >= 0
    # compute loss:
    loss_matrix = F.binary_cross_entropy_with_logits(logits, observed_labels, reduction='none')
    corrected_loss_matrix = F.binary_cross_entropy_with_logits(
        logits, torch.logical_not(observed_labels).float(), reduction='none')
    return loss_matrix, corrected_loss_matrix


def ll_compute_batch_loss(preds, label_vec, P):
    """The reference exactly (quirks included). Returns loss, correction_idx and, for
    the test, the mask of entries that took the modified value."""
    assert preds.dim() == 2
    batch_size = int(preds.size(0))
    num_classes = int(preds.size(1))
    unobserved_mask = (label_vec == 0)
    # compute loss for each image and class:
    loss_matrix, corrected_loss_matrix = ll_loss_an(preds, label_vec.clip(0), P)
    correction_idx = None
    modified = torch.zeros_like(loss_matrix, dtype=torch.bool)
    if P['clean_rate'] == 1:  # if epoch is 1, do not modify losses
        final_loss_matrix = loss_matrix
    else:
        if P['mod_scheme'] is 'LL-Cp':  # noqa: F632 — the reference's test, kept
            k = math.ceil(batch_size * num_classes * P['delta_rel'])
        else:
            k = math.ceil(batch_size * num_classes * (1 - P['clean_rate']))
        unobserved_loss = unobserved_mask.bool() * loss_matrix
        topk = torch.topk(unobserved_loss.flatten(), k)
        topk_lossvalue = topk.values[-1]
        correction_idx = torch.where(unobserved_loss > topk_lossvalue)
        modified = ~(unobserved_loss < topk_lossvalue)
        if P['mod_scheme'] in ['LL-Ct', 'LL-Cp']:
            final_loss_matrix = torch.where(unobserved_loss < topk_lossvalue, loss_matrix,
                                            corrected_loss_matrix)
        else:
            zero_loss_matrix = torch.zeros_like(loss_matrix)
            final_loss_matrix = torch.where(unobserved_loss < topk_lossvalue, loss_matrix,
                                            zero_loss_matrix)
    main_loss = final_loss_matrix.mean()
    return main_loss, correction_idx, modified


def ll_compute_batch_loss_paper(preds, label_vec, P):
    """The reference with docs/methods.md's decisions: LL-Cp tested with ==, observed entries
    never modified, and the absolute threshold R(t) (supp. §B)."""
    assert preds.dim() == 2
    batch_size = int(preds.size(0))
    num_classes = int(preds.size(1))
    unobserved_mask = (label_vec == 0)
    loss_matrix, corrected_loss_matrix = ll_loss_an(preds, label_vec.clip(0), P)
    correction_idx = None
    modified = torch.zeros_like(loss_matrix, dtype=torch.bool)
    unobserved_loss = unobserved_mask.bool() * loss_matrix
    if P['threshold'] == 'absolute':  # methods.md: U > R(t), R(t) = R0 - (t-1)·Δabs
        R = P['r0'] - (P['epoch'] - 1) * P['delta_abs']
        modified = unobserved_mask & (unobserved_loss > R)
        correction_idx = torch.where(modified)
    elif P['clean_rate'] != 1:
        if P['mod_scheme'] == 'LL-Cp':  # methods.md: == (the paper's LL-Cp)
            k = math.ceil(batch_size * num_classes * P['delta_rel'])
        else:
            k = math.ceil(batch_size * num_classes * (1 - P['clean_rate']))
        topk = torch.topk(unobserved_loss.flatten(), k)
        topk_lossvalue = topk.values[-1]
        correction_idx = torch.where(unobserved_loss > topk_lossvalue)
        modified = unobserved_mask & ~(unobserved_loss < topk_lossvalue)  # methods.md: observed never
    if P['mod_scheme'] in ['LL-Ct', 'LL-Cp']:
        final_loss_matrix = torch.where(modified, corrected_loss_matrix, loss_matrix)
    elif P['mod_scheme'] == 'LL-R':
        final_loss_matrix = torch.where(modified, torch.zeros_like(loss_matrix), loss_matrix)
    else:
        final_loss_matrix = loss_matrix
    main_loss = final_loss_matrix.mean()
    return main_loss, correction_idx, modified


# ---- single-positive-multi-label losses.py (transcription) --------------------------------

LOG_EPSILON = 1e-5


def neg_log(x):
    return - torch.log(x + LOG_EPSILON)


def expected_positive_regularizer(preds, expected_num_pos, norm='2'):
    # Assumes predictions in [0,1].
    if norm == '1':
        reg = torch.abs(preds.sum(1).mean(0) - expected_num_pos)
    elif norm == '2':
        reg = (preds.sum(1).mean(0) - expected_num_pos)**2
    else:
        raise NotImplementedError
    return reg


def loss_an_ls(batch, P, Z):
    preds = batch['preds']
    observed_labels = batch['label_vec_obs']
    assert torch.min(observed_labels) >= 0
    loss_mtx = torch.zeros_like(observed_labels)
    loss_mtx[observed_labels == 1] = (1.0 - P['ls_coef']) * neg_log(preds[observed_labels == 1]) + P['ls_coef'] * neg_log(1.0 - preds[observed_labels == 1])
    loss_mtx[observed_labels == 0] = (1.0 - P['ls_coef']) * neg_log(1.0 - preds[observed_labels == 0]) + P['ls_coef'] * neg_log(preds[observed_labels == 0])
    reg_loss = None
    return loss_mtx, reg_loss


def loss_wan(batch, P, Z):
    preds = batch['preds']
    observed_labels = batch['label_vec_obs']
    assert torch.min(observed_labels) >= 0
    loss_mtx = torch.zeros_like(observed_labels)
    loss_mtx[observed_labels == 1] = neg_log(preds[observed_labels == 1])
    loss_mtx[observed_labels == 0] = neg_log(1.0 - preds[observed_labels == 0]) / float(P['num_classes'] - 1)
    reg_loss = None
    return loss_mtx, reg_loss


def loss_epr(batch, P, Z):
    preds = batch['preds']
    observed_labels = batch['label_vec_obs']
    assert torch.min(observed_labels) >= 0
    loss_mtx = torch.zeros_like(observed_labels)
    loss_mtx[observed_labels == 1] = neg_log(preds[observed_labels == 1])
    reg_loss = expected_positive_regularizer(preds, P['expected_num_pos'], norm='2') / (P['num_classes'] ** 2)
    return loss_mtx, reg_loss


def loss_role(batch, P, Z):
    preds = batch['preds']
    observed_labels = batch['label_vec_obs']
    estimated_labels = batch['label_vec_est']
    assert torch.min(observed_labels) >= 0
    loss_mtx_pos_1 = torch.zeros_like(observed_labels)
    loss_mtx_pos_1[observed_labels == 1] = neg_log(preds[observed_labels == 1])
    estimated_labels_detached = estimated_labels.detach()
    loss_mtx_cross_1 = estimated_labels_detached * neg_log(preds) + (1.0 - estimated_labels_detached) * neg_log(1.0 - preds)
    reg_1 = expected_positive_regularizer(preds, P['expected_num_pos'], norm='2') / (P['num_classes'] ** 2)
    loss_mtx_pos_2 = torch.zeros_like(observed_labels)
    loss_mtx_pos_2[observed_labels == 1] = neg_log(estimated_labels[observed_labels == 1])
    preds_detached = preds.detach()
    loss_mtx_cross_2 = preds_detached * neg_log(estimated_labels) + (1.0 - preds_detached) * neg_log(1.0 - estimated_labels)
    reg_2 = expected_positive_regularizer(estimated_labels, P['expected_num_pos'], norm='2') / (P['num_classes'] ** 2)
    reg_loss = 0.5 * (reg_1 + reg_2)
    loss_mtx = 0.5 * (loss_mtx_pos_1 + loss_mtx_pos_2)
    loss_mtx += 0.5 * (loss_mtx_cross_1 + loss_mtx_cross_2)
    return loss_mtx, reg_loss


cole_loss_functions = {'an-ls': loss_an_ls, 'wan': loss_wan, 'epr': loss_epr, 'role': loss_role}


def cole_compute_batch_loss(batch, P, Z):
    assert batch['preds'].dim() == 2
    batch_size = int(batch['preds'].size(0))
    num_classes = int(batch['preds'].size(1))
    loss_denom_mtx = (num_classes * batch_size) * torch.ones_like(batch['preds'])
    assert torch.max(batch['label_vec_obs']) <= 1
    assert torch.min(batch['label_vec_obs']) >= -1
    assert batch['preds'].size() == batch['label_vec_obs'].size()
    assert torch.max(batch['preds']) <= 1
    assert torch.min(batch['preds']) >= 0
    loss_mtx, reg_loss = cole_loss_functions[P['loss']](batch, P, Z)
    main_loss = (loss_mtx / loss_denom_mtx).sum()
    if reg_loss is not None:
        batch['loss_tensor'] = main_loss + reg_loss
    else:
        batch['loss_tensor'] = main_loss
    return batch


# ---- models.py LabelEstimator initialisation (numpy's random_sample for torch.rand) ----

def inverse_sigmoid(p):
    epsilon = 1e-5
    p = np.minimum(p, 1 - epsilon)
    p = np.maximum(p, epsilon)
    return np.log(p / (1 - p))


def role_init(observed_label_matrix, num_classes, seed):
    num_examples = int(np.shape(observed_label_matrix)[0])
    rs = np.random.RandomState(seed)
    w = 0.1
    q = inverse_sigmoid(0.5 + w)
    param_mtx = q * (2 * rs.random_sample((num_examples, num_classes)) - 1)
    param_mtx = param_mtx.astype(np.float32)
    init_logit_pos = inverse_sigmoid(0.995)
    param_mtx[observed_label_matrix == 1] = init_logit_pos
    init_logit_neg = inverse_sigmoid(0.005)
    param_mtx[observed_label_matrix == -1] = init_logit_neg
    return param_mtx


# ---- test cases ----------------------------------------------------------------------------

KINDS = ['full', 'an', 'an-ls', 'wan', 'epr', 'role', 'll-r', 'll-ct', 'll-cp']
SCHEME = {'ll-r': 'LL-R', 'll-ct': 'LL-Ct', 'll-cp': 'LL-Cp', 'an': 'AN', 'full': 'AN'}


def make_labels(rs, n, c, obs_neg_frac, unknown_frac):
    full = (rs.rand(n, c) < 0.15).astype(np.int8)
    for i in range(n):
        if not full[i].any():
            full[i, rs.randint(c)] = 1
    if unknown_frac > 0:
        full[(rs.rand(n, c) < unknown_frac) & (full == 0)] = -1
    observed = np.zeros((n, c), np.int8)
    for i in range(n):  # single positive, plus some observed negatives
        pos = np.nonzero(full[i] == 1)[0]
        observed[i, pos[rs.randint(len(pos))]] = 1
    observed[(rs.rand(n, c) < obs_neg_frac) & (full == 0)] = -1
    return full, observed


def make_logits(rs, b, c, mode, observed):
    if mode == 'ties':  # a coarse grid: many exactly equal losses
        z = np.round(rs.randn(b, c) * 4) / 2
    elif mode == 'zeros':  # most unobserved losses exactly 0 (bce underflow), thr = 0
        z = rs.randn(b, c) * 2
        hide = (observed == 0) & (rs.rand(b, c) < 0.85)
        z[hide] = -30.0 - 10.0 * rs.rand(int(hide.sum()))
    else:
        z = rs.randn(b, c) * 2
    return z.astype(np.float32)


def loss_cases():
    cases = []
    for kind in KINDS:
        thresholds = ['relative', 'absolute'] if kind.startswith('ll-') else ['relative']
        for thr in thresholds:
            quirk_modes = [0, 1] if kind.startswith('ll-') and thr == 'relative' else [0]
            for quirks in quirk_modes:
                for c in (20, 80):
                    for seed, mode in ((1, 'random'), (2, 'ties')):
                        cases.append(dict(kind=kind, thr=thr, quirks=quirks, c=c, seed=seed,
                                          mode=mode, pct=2.0 if mode == 'random' else 0.3,
                                          obs_neg=0.0, unknown=0.0))
    for kind in ('ll-r', 'll-ct', 'll-cp'):  # top-k threshold 0: quirk vs paper differ
        for quirks in (0, 1):
            cases.append(dict(kind=kind, thr='relative', quirks=quirks, c=20, seed=3,
                              mode='zeros', pct=10.0, obs_neg=0.6, unknown=0.0))
    for kind in ('full', 'an', 'll-ct', 'wan', 'role'):  # OpenImages-like labels
        cases.append(dict(kind=kind, thr='relative', quirks=0, c=20, seed=4, mode='random',
                          pct=1.0, obs_neg=0.3, unknown=0.2))
    return cases


def run_loss_case(cs):
    rs = np.random.RandomState(1000 + cs['seed'] * 7 + cs['c'])
    n, b, c, epochs = 40, 16, cs['c'], 5  # batches of 16, 16, 8
    r0, dabs, ls, k_epr = 1.5, 0.2, 0.1, 2.9
    full, observed = make_labels(rs, n, c, cs['obs_neg'], cs['unknown'])
    kind = cs['kind']
    emit([KINDS.index(kind), 1 if cs['thr'] == 'absolute' else 0, cs['quirks'], n, b, c,
          epochs], np.int32)
    emit([cs['pct'], r0, dabs, ls, k_epr], np.float64)
    emit(full, np.int8)
    emit(observed, np.int8)
    label_matrix_obs = observed.astype(np.float32)  # the dataset's state (train.py)
    # config.py: delta_rel /= 100; clean_rate = 1; the scheme name arrives at run time
    # (argparse), so `is 'LL-Cp'` is False — build it at run time here too.
    scheme = ''.join(list(SCHEME.get(kind, 'AN')))
    P = {'mod_scheme': scheme, 'delta_rel': cs['pct'] / 100 if cs['pct'] != 0 else 0,
         'clean_rate': 1, 'threshold': cs['thr'], 'r0': r0, 'delta_abs': dabs,
         'ls_coef': ls, 'expected_num_pos': k_epr, 'num_classes': c, 'loss': kind}
    for epoch in range(1, epochs + 1):
        P['epoch'] = epoch
        perm = rs.permutation(n)
        for start in range(0, n, b):
            idx = perm[start:start + b]
            bb = len(idx)
            label_vec_obs = torch.tensor(label_matrix_obs[idx])
            z = make_logits(rs, bb, c, cs['mode'], label_matrix_obs[idx])
            emit(idx, np.int64)
            emit(z, np.float32)
            logits = torch.tensor(z, requires_grad=True)
            g_rows = None
            modified = torch.zeros(bb, c, dtype=torch.bool)
            flips = np.zeros((0, 2), np.int32)
            if kind in cole_loss_functions:
                batch = {'preds': torch.sigmoid(logits),
                         'label_vec_obs': label_vec_obs.clip(0)}  # methods.md: -1 = "other entry"
                if kind == 'role':
                    g_rows = (rs.randn(bb, c) * 2).astype(np.float32)
                    g_rows[label_matrix_obs[idx] == 1] = inverse_sigmoid(0.995)
                    emit(g_rows, np.float32)
                    G = torch.tensor(g_rows, requires_grad=True)
                    batch['label_vec_est'] = torch.sigmoid(G)
                batch = cole_compute_batch_loss(batch, P, None)
                loss = batch['loss_tensor']
            elif kind == 'full':
                target = torch.tensor((full[idx] == 1).astype(np.float32))
                loss, _, _ = ll_compute_batch_loss(logits, target, dict(P, clean_rate=1))
                correction_idx = None
            else:
                if kind == 'an':
                    loss, correction_idx, modified = ll_compute_batch_loss(
                        logits, label_vec_obs, dict(P, clean_rate=1))
                elif cs['quirks']:
                    assert cs['thr'] == 'relative'
                    loss, correction_idx, modified = ll_compute_batch_loss(logits, label_vec_obs, P)
                else:
                    loss, correction_idx, modified = ll_compute_batch_loss_paper(
                        logits, label_vec_obs, P)
                # train.py: LL-Cp's permanent flips (the reference tests `is`)
                lcp = (P['mod_scheme'] is 'LL-Cp') if cs['quirks'] else (P['mod_scheme'] == 'LL-Cp')  # noqa: F632
                if lcp and correction_idx is not None:
                    label_matrix_obs[idx[correction_idx[0].numpy()], correction_idx[1].numpy()] = 1.0
                    flips = np.stack([correction_idx[0].numpy(), correction_idx[1].numpy()], 1)
            loss.backward()
            emit([loss.item()], np.float64)
            emit(logits.grad.numpy(), np.float32)
            if g_rows is not None:
                emit(G.grad.numpy(), np.float32)
            emit(modified.numpy(), np.uint8)
            emit(flips, np.int32)
        P['clean_rate'] -= P['delta_rel']  # train.py, after each epoch
    emit(label_matrix_obs.astype(np.int8), np.int8)


def main_loss():
    cases = loss_cases()
    emit([len(cases)], np.int32)
    for cs in cases:
        run_loss_case(cs)


def main_role_init():
    rs = np.random.RandomState(5)
    n, c, seed = 50, 30, 1234
    _, observed = make_labels(rs, n, c, 0.2, 0.0)
    emit([n, c, seed], np.int32)
    emit(observed, np.int8)
    emit(role_init(observed, c, seed), np.float32)


def main_k():
    # train.py's clean_rate schedule and losses.py's k, for many sizes and rates
    # (including OpenImages' 0.005 % and 5,000 classes): (pct, B, C) then, for epochs
    # 1..10, k of LL-R/LL-Ct and of LL-Cp (0 = not modified).
    pcts = [0.1, 0.2, 0.3, 0.4, 0.5, 0.005, 0.01, 0.7, 1.0 / 3.0, 2.5, 10.0]
    combos = [(pct, b, c) for pct in pcts for b in (1, 7, 16) for c in (20, 80, 81, 312, 5000)]
    emit([len(combos)], np.int32)
    for pct, b, c in combos:
        emit([pct], np.float64)
        emit([b, c], np.int32)
        P = {'delta_rel': pct / 100, 'clean_rate': 1}
        ks = []
        for epoch in range(1, 11):
            if P['clean_rate'] == 1:
                ks += [0, 0]
            else:
                ks += [math.ceil(b * c * (1 - P['clean_rate'])), math.ceil(b * c * P['delta_rel'])]
            P['clean_rate'] -= P['delta_rel']
        emit(ks, np.int64)


def main_optim():
    # Two parameter groups (backbone lr, head lr = 10·lr), 20 steps, vs torch.optim.
    configs = [('adam', dict(), 1e-3), ('adam', dict(weight_decay=0.01), 1e-3),
               ('sgd', dict(momentum=0.9, weight_decay=1e-3), 1e-2)]
    emit([len(configs)], np.int32)
    sizes, steps = (1003, 37), 20
    for ci, (kind, kw, lr) in enumerate(configs):
        rs = np.random.RandomState(77 + ci)
        p0 = [rs.randn(s).astype(np.float32) for s in sizes]
        params = [torch.tensor(p.copy(), requires_grad=True) for p in p0]
        groups = [{'params': [params[0]], 'lr': lr}, {'params': [params[1]], 'lr': 10 * lr}]
        if kind == 'adam':
            opt = torch.optim.Adam(groups, lr=lr, **kw)
        else:
            opt = torch.optim.SGD(groups, lr=lr, **kw)
        emit([0 if kind == 'adam' else 1, steps] + list(sizes), np.int32)
        emit([lr, kw.get('weight_decay', 0.0), kw.get('momentum', 0.0)], np.float64)
        for p in p0:
            emit(p, np.float32)
        for step in range(steps):
            for p in params:
                p.grad = torch.tensor((rs.randn(p.numel()) * 10 ** rs.uniform(-3, 1)).astype(np.float32))
                emit(p.grad.numpy(), np.float32)
            opt.step()
            for p in params:
                emit(p.detach().numpy(), np.float32)
        for p in params:
            st = opt.state[p]
            if kind == 'adam':
                emit(st['exp_avg'].numpy(), np.float32)
                emit(st['exp_avg_sq'].numpy(), np.float32)
            else:
                emit(st['momentum_buffer'].numpy(), np.float32)


if __name__ == '__main__':
    {'loss': main_loss, 'optim': main_optim, 'role-init': main_role_init, 'k': main_k}[sys.argv[1]]()
    OUT.flush()
