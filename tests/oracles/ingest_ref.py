#!/usr/bin/python3
"""Oracle for wsml-ingest (tests/e2e/ingest_*.sh).

usage: ingest_ref.py check --format F --root DIR --store STORE [--images DIR]
                           [--classes FILE] [--size N] [--num-pos N] [--num-neg N]
                           [--seed S] [--val-frac F] [--split-seed S] [--pixels]
       ingest_ref.py fashion --store STORE --format fashion-mosaic|fashion-items
                           [--train-count N] [--test-count N] [--tile-prob P]
                           [--mosaic-seed S] [--val-frac F] [--idx-dir DIR]

`check` computes what the store must hold from the raw fixture files with Python
transcriptions of the reference scripts (Cole et al., elijahcole/single-positive-
multi-label: preproc/format_pascal.py, format_coco.py, format_cub.py,
generate_observed_labels.py and datasets.generate_split), then reads the store back
through `wsml-store info/export/verify` and compares class names, split counts, ids,
full labels, observed labels, and image sizes (and, with --pixels, the pixels against
PIL's resize((S, S), BILINEAR) of the source image, loosely: JPEG and resampler
differences are allowed, a wrong or shifted image is not).
`fashion` redraws the demo mosaics/items with numpy from the Debian IDX files following
the procedure documented in ingest/fashion.c and compares ids, labels and exact pixels.
Exit status 1 with a message naming the first difference.
"""
import argparse
import glob
import gzip
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

VOC_CLASSES = ['aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat',
               'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person',
               'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor']


def fail(msg):
    print('ingest_ref: MISMATCH: ' + msg, file=sys.stderr)
    sys.exit(1)


# ---- reference algorithms (transcribed) ------------------------------------------------
def get_random_label_indices(label_vec, label_value, num_sel, rng):
    idx_all = np.nonzero(label_vec == label_value)[0]
    rng.shuffle(idx_all)
    if num_sel == -1:
        return idx_all
    return idx_all[:num_sel]


def observe_uniform(label_matrix, num_pos, num_neg, rng):
    """generate_observed_labels.py; label_matrix is -1/+1."""
    num_items, num_classes = np.shape(label_matrix)
    label_matrix_obs = np.zeros_like(label_matrix)
    for i in range(num_items):
        idx_pos = get_random_label_indices(label_matrix[i, :], 1.0, num_pos, rng)
        label_matrix_obs[i, idx_pos] = 1.0
        idx_neg = get_random_label_indices(label_matrix[i, :], -1.0, num_neg, rng)
        label_matrix_obs[i, idx_neg] = -1.0
    return label_matrix_obs


def simulate(labels01, num_pos, num_neg, seed):
    m = labels01.astype(np.float64).copy()
    m[m == 0] = -1
    return observe_uniform(m, num_pos, num_neg, np.random.RandomState(seed))


def generate_split(num_ex, frac, rng):
    """datasets.generate_split."""
    n_2 = int(np.round(frac * num_ex))
    n_1 = num_ex - n_2
    idx_rand = rng.permutation(num_ex)
    idx_1 = np.sort(idx_rand[:n_1])
    idx_2 = np.sort(idx_rand[-n_2:]) if n_2 else np.zeros(0, dtype=int)
    return idx_1, idx_2


def format_pascal(root):
    """format_pascal.py: {phase: (image file names, label matrix)}; root = VOC2012."""
    out = {}
    for phase in ['train', 'val']:
        ann, image_list = {}, []
        for c, cat in enumerate(VOC_CLASSES):
            with open(os.path.join(root, 'ImageSets', 'Main', cat + '_' + phase + '.txt')) as f:
                for line in f:
                    cur_line = line.rstrip().split(' ')
                    image_fname = cur_line[0] + '.jpg'
                    if int(cur_line[-1]) == 1:
                        if image_fname not in ann:
                            ann[image_fname] = []
                            image_list.append(image_fname)
                        ann[image_fname].append(c)
        image_list.sort()
        lab = np.zeros((len(image_list), 20))
        for i, im in enumerate(image_list):
            lab[i, np.array(ann[im])] = 1.0
        out[phase] = (image_list, lab)
    return VOC_CLASSES, out


def format_coco(root):
    """format_coco.py (paths from the ids, as the reference writes them)."""
    out, cats = {}, None
    for split in ['train', 'val']:
        with open(os.path.join(root, 'annotations', 'instances_' + split + '2014.json')) as f:
            D = json.load(f)
        names = [c['name'] for c in D['categories']]
        id_to_index = {c['id']: i for i, c in enumerate(D['categories'])}
        if cats is None:
            cats = (names, id_to_index)
        else:
            assert cats == (names, id_to_index)
        image_id_list = sorted(np.unique([str(a['image_id']) for a in D['annotations']]))
        image_id_list = np.array(image_id_list, dtype=int)
        row = {image_id_list[i]: i for i in range(len(image_id_list))}
        lab = np.zeros((len(image_id_list), len(names)))
        for a in D['annotations']:
            lab[row[int(a['image_id'])]][id_to_index[int(a['category_id'])]] = 1
        ids = ['{}2014/COCO_{}2014_{}.jpg'.format(split, split, str(int(x)).zfill(12))
               for x in image_id_list]
        out[split] = (ids, lab)
    return cats[0], out


def format_cub(root):
    """format_cub.py without pandas: first three fields of the label lines."""
    base = os.path.join(root, 'CUB_200_2011')
    with open(os.path.join(root, 'attributes.txt')) as f:
        classes = [l.split(' ')[1].strip() for l in f if l.strip()]
    with open(os.path.join(base, 'images.txt')) as f:
        images = [l.split(' ')[1].strip() for l in f if l.strip()]
    with open(os.path.join(base, 'train_test_split.txt')) as f:
        is_train = [int(l.split(' ')[1]) for l in f if l.strip()]
    with open(os.path.join(base, 'attributes', 'image_attribute_labels.txt')) as f:
        att = [int(l.split(' ')[2]) for l in f if l.strip()]
    C = len(classes)
    assert len(att) == C * len(images)
    tr, te = ([], []), ([], [])
    for i in range(len(images)):
        dst = tr if is_train[i] == 1 else te
        dst[0].append(images[i])
        dst[1].append(att[i * C:(i + 1) * C])
    return classes, {'train': (tr[0], np.array(tr[1], dtype=np.float64).reshape(-1, C)),
                     'val': (te[0], np.array(te[1], dtype=np.float64).reshape(-1, C))}


def load_npy(root, classes_file):
    out = {}
    for phase in ['train', 'val']:
        images = np.load(os.path.join(root, 'formatted_%s_images.npy' % phase))
        labels = np.load(os.path.join(root, 'formatted_%s_labels.npy' % phase))
        p = os.path.join(root, 'formatted_%s_labels_obs.npy' % phase)
        obs = np.load(p) if os.path.exists(p) else None
        out[phase] = ([str(s) for s in images], labels, obs)
    C = out['train'][1].shape[1]
    if classes_file:
        classes = [l.strip() for l in open(classes_file) if l.strip()]
    else:
        classes = ['class_%d' % c for c in range(C)]
    return classes, out


def read_openimages(root):
    """docs/datasets.md rules written independently: trainable order, conf 1/0, positive wins,
    images with a trainable label sorted by ImageID; unknown = -1."""
    meta = os.path.join(root, '2017_11')
    mids = [l.strip() for l in open(os.path.join(meta, 'classes-trainable.txt')) if l.strip()]
    import csv
    desc = {}
    with open(os.path.join(meta, 'class-descriptions.csv'), newline='') as f:
        for row in csv.reader(f):
            desc.setdefault(row[0], row[1])
    names, seen = [], set()
    for m in mids:
        n = desc.get(m, m)
        if n in seen:
            n = '%s (%s)' % (n, m)
        seen.add(desc.get(m, m))
        names.append(n)
    index = {m: k for k, m in enumerate(mids)}
    out = {}
    for split, folder in (('train', 'images_train'), ('validation', 'images_val'),
                          ('test', 'images_test')):
        lab = {}
        with open(os.path.join(meta, split, 'annotations-human.csv'), newline='') as f:
            for row in csv.DictReader(f):
                if row['LabelName'] not in index:
                    continue
                c = index[row['LabelName']]
                v = int(float(row['Confidence']))
                d = lab.setdefault(row['ImageID'], {})
                d[c] = max(d.get(c, 0), v)
        ids = sorted(lab)
        full = -np.ones((len(ids), len(mids)), dtype=np.int8)
        for i, iid in enumerate(ids):
            for c, v in lab[iid].items():
                full[i, c] = v
        out[split] = (['%s/%s.jpg' % (folder, i) for i in ids], full)
    return names, out


def read_csv_dataset(root, classes_file):
    import csv
    files = {}
    for name in ('train', 'val', 'test'):
        p = os.path.join(root, name + '.csv')
        if os.path.exists(p):
            with open(p, newline='') as f:
                files[name] = list(csv.DictReader(f))

    def names(field):
        return [t.strip() for t in field.split('|') if t.strip()]
    if classes_file:
        classes = [l.strip() for l in open(classes_file) if l.strip()]
    else:
        u = set()
        for rows in files.values():
            for r in rows:
                u.update(names(r['labels']))
                u.update(n.lstrip('-') for n in names(r.get('observed') or ''))
        classes = sorted(u, key=lambda s: s.encode())
    idx = {c: k for k, c in enumerate(classes)}
    out = {}
    for name, rows in files.items():
        full = np.zeros((len(rows), len(classes)), dtype=np.int8)
        obs = np.zeros_like(full) if rows and 'observed' in rows[0] else None
        for i, r in enumerate(rows):
            for n in names(r['labels']):
                full[i, idx[n]] = 1
            if obs is not None:
                for n in names(r['observed']):
                    obs[i, idx[n.lstrip('-')]] = -1 if n.startswith('-') else 1
        out[name] = ([r['path'] for r in rows], full, obs)
    return classes, out


# ---- expected store ------------------------------------------------------------------------
def expected(a):
    """{'classes': [...], 'splits': {split: (ids, full int8, observed int8, source paths)}}"""
    fmt = a.format
    if fmt == 'voc':
        classes, off = format_pascal(a.root)
        img_root = os.path.join(a.root, 'JPEGImages')
        off = {k: (ids, lab, None) for k, (ids, lab) in off.items()}
    elif fmt == 'coco':
        classes, off = format_coco(a.root)
        img_root = a.root
        off = {k: (ids, lab, None) for k, (ids, lab) in off.items()}
    elif fmt == 'cub':
        classes, off = format_cub(a.root)
        img_root = os.path.join(a.root, 'CUB_200_2011', 'images')
        off = {k: (ids, lab, None) for k, (ids, lab) in off.items()}
    elif fmt == 'npy':
        classes, off = load_npy(a.root, a.classes)
        img_root = a.images or a.root
    elif fmt == 'openimages':
        classes, off = read_openimages(a.root)
        img_root = a.root
        splits = {}
        for s, k in (('train', 'train'), ('val', 'validation'), ('test', 'test')):
            ids, full = off[k]
            obs = np.where(full == 1, 1, np.where(full == 0, -1, 0)).astype(np.int8)
            splits[s] = (ids, full, obs, [os.path.join(img_root, i) for i in ids])
        return {'classes': classes, 'splits': splits}
    elif fmt == 'csv':
        classes, files = read_csv_dataset(a.root, a.classes)
        img_root = a.images or a.root
        off = {'train': files['train'], 'val': files.get('test', ([], np.zeros((0, len(classes))), None))}
        official_val = files.get('val')
    else:
        fail('unknown format ' + fmt)

    def obs_of(phase):
        ids, lab, obs = off[phase]
        if obs is not None:
            return np.asarray(obs).astype(np.int8)
        if len(ids) == 0:
            return np.zeros((0, len(classes)), dtype=np.int8)
        return simulate(np.asarray(lab), a.num_pos, a.num_neg, a.seed).astype(np.int8)

    splits = {}
    ids, lab, _ = off['train']
    lab = np.asarray(lab).astype(np.int8)
    obs = obs_of('train')
    if fmt == 'csv' and official_val is not None:
        tr, va = np.arange(len(ids)), None
        vids, vlab, vobs = official_val
        if vobs is None:
            vobs = simulate(vlab, a.num_pos, a.num_neg, a.seed)
        splits['val'] = (vids, np.asarray(vlab).astype(np.int8), np.asarray(vobs).astype(np.int8),
                         [os.path.join(img_root, i) for i in vids])
    else:
        tr, va = generate_split(len(ids), a.val_frac, np.random.RandomState(a.split_seed))
        splits['val'] = ([ids[i] for i in va], lab[va], obs[va],
                         [os.path.join(img_root, ids[i]) for i in va])
    splits['train'] = ([ids[i] for i in tr], lab[tr], obs[tr],
                       [os.path.join(img_root, ids[i]) for i in tr])
    tids, tlab, _ = off['val']
    splits['test'] = (list(tids), np.asarray(tlab).astype(np.int8).reshape(len(tids), -1),
                      obs_of('val').reshape(len(tids), -1),
                      [os.path.join(img_root, i) for i in tids])
    return {'classes': classes, 'splits': splits}


# ---- reading the store back through wsml-store ----------------------------------------
def wsml_store(*args, capture=True):
    exe = os.path.join(os.environ.get('WSML_BUILD', ''), 'wsml-store')
    if not os.path.exists(exe):
        exe = 'wsml-store'
    r = subprocess.run([exe] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        fail('wsml-store %s failed: %s' % (' '.join(args), r.stderr.decode().strip()))
    return r.stdout


def read_split(store, split, n, tmp, max_images=16):
    """ids (list of str), full labels, observed labels, and the first max_images images
    (HWC uint8; exporting PNGs is slow: each is written atomically with an fsync)."""
    ids_path = os.path.join(tmp, split + '_ids.txt')
    wsml_store('export', store, '--split', split, '--what', 'ids', '--out', ids_path)
    with open(ids_path, encoding='utf-8') as f:
        ids = f.read().split('\n')
    if ids and ids[-1] == '':
        ids.pop()
    res = [ids]
    for what in ('labels', 'observed'):
        p = os.path.join(tmp, '%s_%s.npy' % (split, what))
        wsml_store('export', store, '--split', split, '--what', what, '--out', p)
        res.append(np.load(p))
    d = os.path.join(tmp, split + '_images')
    images = []
    n = min(n, max_images)
    if n:
        wsml_store('export', store, '--split', split, '--what', 'images', '--range',
                   '0:%d' % n, '--out', d)
        files = sorted(glob.glob(os.path.join(d, '*.png')),
                       key=lambda p: int(os.path.basename(p).split('.')[0]))  # DIR/<index>.png
        if len(files) != n:
            fail('%s: exported %d PNG files, expected %d' % (split, len(files), n))
        images = [np.asarray(Image.open(p).convert('RGB')) for p in files]
    res.append(images)
    return res


def store_info(store):
    return json.loads(wsml_store('info', store, '--json'))


def compare(a, exp):
    info = store_info(a.store)
    info = info.get('info', info)
    if info['classes'] != exp['classes']:
        fail('classes %r, expected %r' % (info['classes'], exp['classes']))
    wsml_store('verify', a.store)
    C = len(exp['classes'])
    with tempfile.TemporaryDirectory() as tmp:
        for split in ('train', 'val', 'test'):
            ids, full, obs, paths = exp['splits'][split]
            n = len(ids)
            if info['counts'][split] != n:
                fail('%s: %d records, expected %d' % (split, info['counts'][split], n))
            sids, sfull, sobs, simgs = read_split(a.store, split, n, tmp)
            if sids != list(ids):
                k = next((i for i in range(min(len(ids), len(sids))) if ids[i] != sids[i]), None)
                fail('%s: ids differ (first at %s: %r vs expected %r)' %
                     (split, k, sids[k] if k is not None else sids,
                      ids[k] if k is not None else ids))
            for what, got, want in (('full labels', sfull, full), ('observed labels', sobs, obs)):
                want = np.asarray(want).reshape(n, C).astype(np.int8)
                if got.shape != want.shape or not np.array_equal(got.astype(np.int8), want):
                    bad = np.argwhere(got.reshape(want.shape) != want)[0] \
                        if got.shape == want.shape else None
                    fail('%s: %s differ (shape %s vs %s; first at %s)' %
                         (split, what, got.shape, want.shape, bad))
            for k, im in enumerate(simgs):
                if im.shape != (a.size, a.size, 3):
                    fail('%s[%d]: image shape %s, expected %s' %
                         (split, k, im.shape, (a.size, a.size, 3)))
                if a.pixels:
                    src = Image.open(paths[k]).convert('RGB')
                    ref = np.asarray(src.resize((a.size, a.size), Image.BILINEAR), np.float64)
                    err = np.abs(ref - im).mean()
                    if err > a.pixel_tol:
                        fail('%s[%d] %s: mean |pixel - PIL| = %.2f > %.2f' %
                             (split, k, paths[k], err, a.pixel_tol))
            print('ingest_ref: %s ok: %d images, %d classes, cardinality %.3f' %
                  (split, n, C, float((np.asarray(full) == 1).sum()) / max(n, 1)))


# ---- fashion ---------------------------------------------------------------------------
def read_idx(path):
    with gzip.open(path, 'rb') as f:
        data = f.read()
    magic = int.from_bytes(data[:4], 'big')
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * k:8 + 4 * k], 'big') for k in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_expected(a):
    sets = []
    for prefix in ('train', 't10k'):
        sets.append((read_idx(os.path.join(a.idx_dir, prefix + '-images-idx3-ubyte.gz')),
                     read_idx(os.path.join(a.idx_dir, prefix + '-labels-idx1-ubyte.gz'))))
    official = []
    for s, (imgs, labs) in enumerate(sets):
        rng = np.random.RandomState(a.mosaic_seed + s)
        ids, full, pix = [], [], []
        if a.format == 'fashion-mosaic':
            count = (25000 if a.train_count < 0 else a.train_count) if s == 0 else \
                    (5000 if a.test_count < 0 else a.test_count)
            for m in range(count):
                while True:
                    items = [int(rng.randint(0, len(imgs))) if rng.random_sample() < a.tile_prob
                             else -1 for _ in range(4)]
                    if any(i >= 0 for i in items):
                        break
                ids.append('mosaic-%s-%06d:%s' % ('test' if s else 'train', m,
                                                  ','.join('-' if i < 0 else str(i) for i in items)))
                tiles = [items]
                row = np.zeros(10, np.int8)
                for i in items:
                    if i >= 0:
                        row[labs[i]] = 1
                full.append(row)
                pix.append(tiles[0])
        else:
            want = a.train_count if s == 0 else a.test_count
            n = len(imgs) if want < 0 else min(want, len(imgs))
            for i in range(n):
                pos = int(rng.randint(0, 4))
                items = [-1] * 4
                items[pos] = i
                ids.append('item-%s-%05d@%d' % ('test' if s else 'train', i, pos))
                row = np.zeros(10, np.int8)
                row[labs[i]] = 1
                full.append(row)
                pix.append(items)
        official.append((ids, np.array(full, np.int8).reshape(-1, 10), pix, imgs))

    def render(items, imgs):
        out = np.zeros((56, 56), np.uint8)
        for t, i in enumerate(items):
            if i >= 0:
                out[(t // 2) * 28:(t // 2) * 28 + 28, (t % 2) * 28:(t % 2) * 28 + 28] = imgs[i]
        return np.repeat(out[:, :, None], 3, axis=2)

    ids, full, pix, imgs = official[0]
    obs = simulate(full, 1, 0, 1200).astype(np.int8) if len(ids) else full * 0
    tr, va = generate_split(len(ids), a.val_frac, np.random.RandomState(1200))
    splits = {
        'train': ([ids[i] for i in tr], full[tr], obs[tr], [render(pix[i], imgs) for i in tr]),
        'val': ([ids[i] for i in va], full[va], obs[va], [render(pix[i], imgs) for i in va]),
    }
    tids, tfull, tpix, timgs = official[1]
    tobs = simulate(tfull, 1, 0, 1200).astype(np.int8)
    splits['test'] = (tids, tfull, tobs, [render(p, timgs) for p in tpix])
    return splits


def fashion_check(a):
    exp = fashion_expected(a)
    info = store_info(a.store)
    info = info.get('info', info)
    names = ['t-shirt_top', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt',
             'sneaker', 'bag', 'ankle_boot']
    if info['classes'] != names:
        fail('classes %r' % info['classes'])
    wsml_store('verify', a.store)
    hidden = total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for split in ('train', 'val', 'test'):
            ids, full, obs, pix = exp[split]
            n = len(ids)
            if info['counts'][split] != n:
                fail('%s: %d records, expected %d' % (split, info['counts'][split], n))
            sids, sfull, sobs, simgs = read_split(a.store, split, n, tmp)
            if sids != ids:
                fail('%s: ids differ: %r vs %r' % (split, sids[:3], ids[:3]))
            if not np.array_equal(sfull, full) or not np.array_equal(sobs, obs):
                fail('%s: labels differ' % split)
            for k in range(len(simgs)):
                if not np.array_equal(simgs[k], pix[k]):
                    fail('%s[%d]: pixels differ' % (split, k))
            if split == 'train':
                hidden += int(((full == 1) & (obs != 1)).sum())
                total += full.size
            print('ingest_ref: %s ok: %d images, cardinality %.3f' %
                  (split, n, float(full.sum()) / max(n, 1)))
    print('ingest_ref: hidden positives in train: %.2f%% of label entries' %
          (100.0 * hidden / max(total, 1)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument('cmd', choices=['check', 'fashion'])
    p.add_argument('--format', required=True)
    p.add_argument('--root')
    p.add_argument('--store', required=True)
    p.add_argument('--images')
    p.add_argument('--classes')
    p.add_argument('--size', type=int, default=448)
    p.add_argument('--num-pos', type=int, default=1)
    p.add_argument('--num-neg', type=int, default=0)
    p.add_argument('--seed', type=int, default=1200)
    p.add_argument('--val-frac', type=float, default=0.2)
    p.add_argument('--split-seed', type=int, default=1200)
    p.add_argument('--pixels', action='store_true')
    p.add_argument('--pixel-tol', type=float, default=12.0)
    p.add_argument('--train-count', type=int, default=-1)
    p.add_argument('--test-count', type=int, default=-1)
    p.add_argument('--tile-prob', type=float, default=0.7)
    p.add_argument('--mosaic-seed', type=int, default=0)
    p.add_argument('--idx-dir', default='/usr/share/datasets/fashion-mnist')
    a = p.parse_args()
    if a.cmd == 'fashion':
        fashion_check(a)
    else:
        compare(a, expected(a))


if __name__ == '__main__':
    main()
