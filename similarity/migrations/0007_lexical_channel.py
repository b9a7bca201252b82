"""The lexical channel: each item's BM25 term weights (``sparsevec``) beside its dense vectors,
and each space's document frequencies. Existing rows stay NULL until the worker writes the
space that the new configuration (``SIMILARITY['LEXICAL_BM25']`` in the space's spec) builds;
each space's HNSW index on the column is created with the space (``similarity.indexing.spaces``)."""

import django.db.models.deletion
import pgvector.django.sparsevec
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('similarity', '0006_encodingstate'),
    ]

    operations = [
        migrations.AddField(
            model_name='embedding',
            name='lexical',
            field=pgvector.django.sparsevec.SparseVectorField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name='embedding',
            name='lexical_length',
            field=models.PositiveIntegerField(editable=False, null=True),
        ),
        migrations.CreateModel(
            name='DocumentFrequency',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('term', models.BigIntegerField()),
                ('count', models.BigIntegerField(default=0)),
                ('space', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='document_frequencies', to='similarity.vectorspace')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('space', 'term'), name='similarity_one_frequency_per_term')],
            },
        ),
    ]
